"""Acceptance: after ``python -m agent run --site demo`` the site's node is online in
``/api/nodes/`` and its pools are in ``/api/storagepools/``.

Everything is real and separate, as on a fresh machine: a migrated SQLite hub database, the hub
worker (``celery -A hub worker -Q hub``), the web server, and the agent, the hub and the agent
sharing the filesystem broker under the hub's ``HUB_VAR_DIR``. The agent is given no broker
setting at all: its default broker folder is the hub's. The test reads the API as a client
does, with an administrator's token, and then stops every process by its PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_agent_reports import manage

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api(base: str, path: str, *, token: str | None = None, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def poll(probe: Callable[[], Any], timeout: float, what: str, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists())
    pytest.fail(f"{what} not seen within {timeout}s (last: {last!r})\n{tails}")


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen[bytes], *, group: bool = True) -> None:
    if process.poll() is not None:
        return
    if group:
        os.killpg(process.pid, signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_started_agent_shows_its_node_online_and_its_pools(tmp_path: Path):
    db = tmp_path / "hub.sqlite3"
    hub_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    hub_env.update({"BROKER_URL": "filesystem://", "HUB_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{db}",
                    "CELERY_RESULT_BACKEND": "cache+memory://", "HUB_ADMIN_USER": "admin"})
    hub_env.pop("HUB_ADMIN_PASSWORD", None)
    manage(hub_env, "migrate", "--noinput")
    manage(hub_env, "shell", "-c", "from sites.services.sites import create_site\n"
                                   "create_site(None, name='demo', shortcode='demo')\n")
    password = re.search(r"password: (\S+)", manage(hub_env, "ensure_admin")).group(1)

    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "web", "agent")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["worker"] = start(
            [sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", "hub", "--pool", "solo",
             "--hostname", f"hub-acceptance-{os.getpid()}@localhost", "--without-mingle", "--without-gossip",
             "--loglevel", "INFO"], hub_env, logs["worker"])
        processes["web"] = start([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                                 hub_env, logs["web"])
        # The agent's environment names no broker: it defaults to $HUB_VAR_DIR/broker, the hub's.
        agent_env = {**hub_env, "AGENT_ROOTS": str(data), "AGENT_STATE_DIR": str(tmp_path / "agent-state"),
                     "AGENT_HEARTBEAT_INTERVAL": "2", "AGENT_NODE": "demo-node-1"}
        processes["agent"] = start([sys.executable, "-m", "agent", "run", "--site", "demo"], agent_env,
                                   logs["agent"])

        token = poll(lambda: api(base, "/api/auth/token/", body={"username": "admin", "password": password}),
                     60, "the web server", list(logs.values()))["access"]

        def demo_nodes() -> list[dict[str, Any]]:
            return [node for node in api(base, "/api/nodes/?page_size=0", token=token)["results"]
                    if node["site"] == "demo" and node["online"]]

        [node] = poll(demo_nodes, 90, "an online node of site demo", list(logs.values()))
        assert node["name"] == "demo-node-1" and node["queues"] == ["default"] and node["has_default_queue"]

        def demo_pools() -> list[dict[str, Any]]:
            return [pool for pool in api(base, "/api/storagepools/?page_size=0", token=token)["results"]
                    if pool["site_name"] == "demo"]

        [pool] = poll(demo_pools, 60, "the pools of site demo", list(logs.values()))
        assert pool["is_default"] is True and pool["capacity"] > 0 and pool["free_space"] > 0
        assert pool["used_space"] + pool["free_space"] <= pool["capacity"]

        stop(processes["agent"], group=False)  # SIGTERM to the agent's supervisor, as systemd does
        assert processes["agent"].returncode == 0, logs["agent"].read_text()
    finally:
        for process in processes.values():
            stop(process)
