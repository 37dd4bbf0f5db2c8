"""Agent reports reach the hub's database only through the broker and the hub worker.

A hub worker process runs on a real broker (the filesystem transport, and Redis); the test plays
an agent with a plain Celery app that knows nothing but ``agent.contract`` and publishes a
heartbeat and an inventory report answering a refresh order. The hub's database (a SQLite file
the worker uses) then shows the node online with its queues, the inventory, and the refresh
task finished.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.contract import HubTask
from tests.conftest import require
from tests.integration.test_celery_wiring import broker_app, redis_reachable

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for(query, db: Path, params=(), timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as connection:
            rows = connection.execute(query, params).fetchall()
        if rows:
            return rows
        time.sleep(0.2)
    pytest.fail(f"nothing for {query!r} after {timeout}s")


@pytest.mark.parametrize("transport", ["filesystem", pytest.param("redis", marks=pytest.mark.redis)])
def test_heartbeat_and_inventory_travel_through_the_broker_to_the_database(transport, tmp_path):
    if transport == "redis":
        require(redis_reachable(), "needs Redis on 127.0.0.1:6379")
        broker_url = "redis://127.0.0.1:6379/14"
    else:
        broker_url = "filesystem://"
    db = tmp_path / "hub.sqlite3"
    env = {**os.environ, "BROKER_URL": broker_url, "HUB_VAR_DIR": str(tmp_path),
           "CELERY_RESULT_BACKEND": "cache+memory://", "DATABASE_URL": f"sqlite:///{db}"}
    manage(env, "migrate", "--noinput")
    task_id = manage(env, "shell", "-c", (
        "from sites.services.sites import create_site, request_inventory\n"
        "site = create_site(None, name='lab', shortcode='lab')\n"
        "print(request_inventory(None, site).task_id)\n"
    )).strip().splitlines()[-1]

    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "hub", "worker", "-Q", "hub", "--pool", "solo",
         "--hostname", f"hub-{transport}-{os.getpid()}@localhost", "--without-mingle", "--without-gossip",
         "--loglevel", "INFO", "--logfile", str(log)],
        cwd=ROOT, env=env, start_new_session=True,
    )
    agent = broker_app(env)
    try:
        now = datetime.now(UTC).isoformat()
        agent.send_task(HubTask.HEARTBEAT, kwargs={"beat": {
            "site": "lab", "node": "nsd1", "queues": ["default", "transfer"], "sent_at": now,
            "info": {"version": "test"},
        }}, queue="hub")
        agent.send_task(HubTask.INVENTORY, kwargs={"report": {
            "site": "lab", "node": "nsd1", "task_id": task_id,
            "filesystems": [{"name": "gpfs1", "mountpoint": "/mmfs1", "capacity": 100, "used_space": 40,
                             "free_space": 60}],
            "pools": [{"filesystem": "gpfs1", "name": "system", "capacity": 100, "used_space": 40,
                       "free_space": 60, "is_default": True}],
            "filesets": [{"filesystem": "gpfs1", "name": "root", "path": "/mmfs1"}],
            "servers": [{"name": "nsd1", "list_of_interfaces": [{"name": "eth0", "addresses": ["10.0.0.1"]}]}],
            "counts": {"files_count": 1234, "directories_count": 56},
        }}, queue="hub")

        nodes = wait_for("SELECT n.name, n.last_heartbeat, n.info FROM sites_node n JOIN sites_site s "
                         "ON s.id = n.site_id WHERE s.name = 'lab'", db)
        assert nodes[0][0] == "nsd1" and nodes[0][1] is not None
        assert json.loads(nodes[0][2]) == {"version": "test"}
        queues = wait_for("SELECT q.name FROM sites_queue q JOIN sites_node_queues nq ON nq.queue_id = q.id", db)
        assert sorted(row[0] for row in queues) == ["default", "transfer"]

        state = wait_for("SELECT state, results FROM sites_settingstask WHERE task_id = ? AND state = 'SUCCESS'",
                         db, (task_id.replace("-", ""),))
        assert json.loads(state[0][1])["pools"] == 1
        pools = wait_for("SELECT name, is_default, capacity FROM sites_storagepool", db)
        assert pools == [("system", 1, 100)]
        counts = wait_for("SELECT files_count, directories_count FROM sites_site WHERE name = 'lab'", db)
        assert counts == [(1234, 56)]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
