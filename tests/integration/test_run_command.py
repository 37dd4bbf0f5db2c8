"""What ``make run`` does: migrate, ensure an admin, serve until Ctrl-C, leave nothing running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_fresh_var_dir_migrates_creates_admin_serves_docs_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PORT": str(port),
           "BROKER_URL": "filesystem://"}
    env.pop("DATABASE_URL", None)  # the embedded default: SQLite under var/
    env.pop("HUB_ADMIN_PASSWORD", None)
    assert manage(env, "migrate", "--noinput").returncode == 0
    assert manage(env, "collectstatic", "--noinput", "--verbosity", "0").returncode == 0
    first = manage(env, "ensure_admin")
    assert first.returncode == 0, first.stderr
    password = (tmp_path / "var" / "admin_password").read_text().strip()
    assert f"password: {password}" in first.stdout
    assert password in manage(env, "ensure_admin").stdout  # kept, not regenerated

    server = subprocess.Popen([sys.executable, "manage.py", "runhub"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/docs/", timeout=2) as response:
                    assert response.status == 200 and b"swagger-ui" in response.read()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "hub did not start"
                time.sleep(0.3)
        request = urllib.request.Request(
            f"{base}/api/auth/token/", data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "access" in json.loads(response.read())
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "stopped web" in output
    leftovers = subprocess.run(["pgrep", "-f", f"127.0.0.1:{port}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"processes left running: {leftovers.stdout}"
