"""The hub's Celery app reaches a real worker over each supported broker.

A worker process is started on the broker, answers a broadcast ``ping`` (control/inspect, which
the filesystem transport supports and the SQLAlchemy one does not) and runs ``hub.ping``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery

from tests.conftest import require

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def broker_app(env: dict[str, str]) -> Celery:
    app = Celery("probe", broker=env["BROKER_URL"])
    if env["BROKER_URL"].startswith("filesystem://"):
        broker = Path(env["HUB_VAR_DIR"]) / "broker"
        app.conf.broker_transport_options = {
            "data_folder_in": str(broker / "queue"), "data_folder_out": str(broker / "queue"),
            "control_folder": str(broker / "control"), "processed_folder": str(broker / "processed"),
            "store_processed": False,
        }
    return app


@pytest.mark.parametrize("transport", ["filesystem", pytest.param("redis", marks=pytest.mark.redis)])
def test_worker_answers_ping_and_runs_a_task(transport, tmp_path):
    if transport == "redis":
        require(redis_reachable(), "needs Redis on 127.0.0.1:6379")
        # A database of its own so a parallel run's leftovers never answer for this one.
        broker_url = "redis://127.0.0.1:6379/15"
    else:
        broker_url = "filesystem://"
    env = {**os.environ, "BROKER_URL": broker_url, "HUB_VAR_DIR": str(tmp_path),
           "CELERY_RESULT_BACKEND": "cache+memory://", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    hostname = f"probe-{transport}-{os.getpid()}@localhost"
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", "hub", "--pool", "solo",
         "--hostname", hostname, "--without-mingle", "--without-gossip", "--loglevel", "INFO",
         "--logfile", str(log)],
        cwd=ROOT, env=env, start_new_session=True,
    )
    # Settings create the broker folders on import; the probe app needs them before the worker is up.
    for sub in ("queue", "control", "processed"):
        (tmp_path / "broker" / sub).mkdir(parents=True, exist_ok=True)
    app = broker_app(env)
    try:
        replies = []
        deadline = time.monotonic() + 60
        while not replies and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text() if log.exists() else "worker exited"
            replies = app.control.ping(destination=[hostname], timeout=1.0)
        assert replies == [{hostname: {"ok": "pong"}}]

        task_id = app.send_task("hub.ping", queue="hub").id
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            if f"Task hub.ping[{task_id}] succeeded" in text:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"hub.ping did not run:\n{log.read_text() if log.exists() else ''}")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
