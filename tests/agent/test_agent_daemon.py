"""The agent as a real process on a real broker, seen from the hub's side of the broker.

``python -m agent run`` runs as a subprocess (the filesystem transport in a temporary folder,
and Redis database 13); the test plays the hub with a plain Celery app and kombu consumer that
know nothing but ``agent.contract``: it reads the heartbeats and the start-up inventory from the
hub's queue, sends orders and a data task, reads the ``TaskResult`` reports, redelivers an order
and finally stops the agent with SIGTERM.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from cryptography.fernet import Fernet

from agent.contract import AgentTask, HsmTask, HubTask
from agent.drivers.fs import FolderStore
from agent.hsm.state import HsmState, read_record
from tests.conftest import require
from tests.integration.test_celery_wiring import redis_reachable

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/13"


def filesystem_options(broker_dir: Path) -> dict[str, Any]:
    """The hub's folder layout for the filesystem transport (``hub.settings``)."""
    for sub in ("queue", "processed", "control"):
        (broker_dir / sub).mkdir(parents=True, exist_ok=True)
    return {"data_folder_in": str(broker_dir / "queue"), "data_folder_out": str(broker_dir / "queue"),
            "processed_folder": str(broker_dir / "processed"), "control_folder": str(broker_dir / "control"),
            "store_processed": False, "polling_interval": 0.1}


@dataclass
class HubSide:
    """The hub's end of the broker: publishes orders, consumes the hub queue's reports."""

    broker_url: str
    options: dict[str, Any]
    hub_queue: str
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Celery("hub-probe", broker=self.broker_url, fixups=[], set_as_current=False)
        self.app.conf.broker_transport_options = self.options
        self.app.conf.task_serializer = "json"
        self.connection = self.app.connection_for_read()
        self.queue = self.connection.SimpleQueue(self.hub_queue, serializer="json", accept=["json"])
        self._taken: set[int] = set()

    def purge(self) -> None:
        self.queue.clear()

    def close(self) -> None:
        self.queue.close()
        self.connection.release()

    def send(self, name: str, kwargs: dict[str, Any], *, queue: str, task_id: str | None = None) -> str:
        task_id = task_id or str(uuid.uuid4())
        self.app.send_task(name, kwargs=kwargs, queue=queue, task_id=task_id)
        return task_id

    def _pull(self, timeout: float) -> None:
        try:
            message = self.queue.get(block=True, timeout=timeout)
        except self.queue.Empty:
            return
        _args, kwargs, _embed = message.decode()
        message.ack()
        self.seen.append((message.headers["task"], kwargs))

    def wait_for(self, match: Callable[[str, dict[str, Any]], bool], timeout: float = 60.0,
                 what: str = "a report") -> dict[str, Any]:
        """The first report (not returned before) that ``match``es, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        while True:
            for index, (name, kwargs) in enumerate(self.seen):
                if index not in self._taken and match(name, kwargs):
                    self._taken.add(index)
                    return kwargs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {what} within {timeout}s; seen: {json.dumps(self.seen)[-3000:]}")
            self._pull(min(1.0, remaining))

    def result(self, task_id: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_for(lambda name, kw: name == HubTask.TASK_RESULT and kw["report"]["task_id"] == task_id
                             and kw["report"]["state"] == state, timeout, f"{state} for {task_id}")["report"]

    def finished(self, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_for(lambda name, kw: name == HubTask.TASK_RESULT and kw["report"]["task_id"] == task_id
                             and kw["report"]["state"] in ("SUCCESS", "FAILURE"), timeout,
                             f"the end of {task_id}")["report"]


@dataclass
class Agent:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM the supervisor (as systemd does with KillMode=mixed); seconds it took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_agent(site: str, env: dict[str, str], log: Path, *args: str) -> Agent:
    """``python -m agent run --site <site>`` with ``env`` (``AGENT_*``) on top of a clean environment.

    Django's settings variable stays set, as in any shell next to the hub: the agent must not
    load Django even so.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "agent", "run", "--site", site, *args], cwd=ROOT,
                                   env={**clean, **env}, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Agent(process, log)


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(params=["filesystem", pytest.param("redis", marks=pytest.mark.redis)])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], HubSide]]:
    """(site, agent environment, hub side) on a fresh broker."""
    if request.param == "redis":
        require(redis_reachable(), "needs Redis on 127.0.0.1:6379")
        # Names of their own, so a parallel run on the same Redis never reads these reports.
        suffix = uuid.uuid4().hex[:8]
        site, env = f"lab-{suffix}", {"AGENT_BROKER_URL": REDIS_URL, "AGENT_HUB_QUEUE": f"hub-{suffix}"}
        hub = HubSide(REDIS_URL, {"visibility_timeout": 3600}, f"hub-{suffix}")
    else:
        site, env = "lab", {"AGENT_BROKER_URL": "filesystem://", "AGENT_BROKER_DIR": str(tmp_path / "broker")}
        hub = HubSide("filesystem://localhost//", filesystem_options(tmp_path / "broker"), "hub")
    hub.purge()
    try:
        yield site, env, hub
    finally:
        hub.close()


def test_agent_serves_the_hub_through_the_broker(broker, tmp_path: Path, key: str):
    site, broker_env, hub = broker
    data = tmp_path / "data"
    data.mkdir()
    remote = tmp_path / "remote"
    remote.mkdir()
    env = {**broker_env, "AGENT_NODE": "nsd1", "AGENT_STATE_DIR": str(tmp_path / "state"), "AGENT_ROOTS": str(data),
           "AGENT_KEY": key, "AGENT_HEARTBEAT_INTERVAL": "1", "AGENT_QUEUES": "default=2,transfer=1",
           "AGENT_LOG_LEVEL": "INFO"}
    agent = start_agent(site, env, tmp_path / "agent.log")
    try:
        # --- heartbeats and the start-up inventory ------------------------------------------------
        beat = hub.wait_for(lambda name, kw: name == HubTask.HEARTBEAT, what="a heartbeat")["beat"]
        assert beat["site"] == site and beat["node"] == "nsd1" and beat["queues"] == ["default", "transfer"]
        assert beat["sent_at"].endswith("+00:00")
        assert beat["info"]["concurrency"] == {"default": 2, "transfer": 1}
        workers = beat["info"]["workers"]
        hub.wait_for(lambda name, kw: name == HubTask.HEARTBEAT, timeout=10, what="a second heartbeat")

        report = hub.wait_for(lambda name, kw: name == HubTask.INVENTORY, what="the inventory")["report"]
        assert report["site"] == site and report["node"] == "nsd1" and "task_id" not in report
        [pool] = report["pools"]
        assert pool["is_default"] is True and pool["filesystem"] == report["filesystems"][0]["name"]
        assert report["servers"][0]["name"] == "nsd1"

        # --- an inventory refresh order ------------------------------------------------------------
        refresh = hub.send(AgentTask.INVENTORY, {"order": {"site": site}}, queue=site)
        hub.result(refresh, "STARTED")
        answer = hub.wait_for(lambda name, kw: name == HubTask.INVENTORY and kw["report"].get("task_id") == refresh,
                              what="the refresh answer")["report"]
        assert answer["pools"][0]["name"] == pool["name"]

        # --- space creation, delivered twice ----------------------------------------------------------
        mountpoint = data / "projects"
        space = {"space": "projects", "mountpoint": str(mountpoint), "size": None, "pool": None,
                 "permission_mode": "chmodAndSetAcl"}
        created = hub.send(AgentTask.CREATE_SPACE, {"order": space}, queue=site)
        first = hub.result(created, "SUCCESS")
        assert first["results"]["created"] is True and mountpoint.is_dir()
        hub.send(AgentTask.CREATE_SPACE, {"order": space}, queue=site, task_id=created)  # redelivered
        again = hub.result(created, "SUCCESS")
        assert again["results"] == first["results"]

        # --- a folder target, its listing, and a migration through the transfer queue ---------------
        FolderStore(str(remote), fsync=False).put("old/report.pdf", io.BytesIO(b"%PDF"), size=4)
        sealed = Fernet(key.encode()).encrypt(json.dumps({"access_key": "unused"}).encode()).decode()
        target = {"endpoint_name": "fs-1-archive", "target": {"id": 1, "name": "archive"},
                  "bucket": {"id": 1, "name": "archive", "storage_type": "fs",
                             "migration_target_folder": str(remote), "advanced_settings": {"fsync": False}},
                  "credentials_ref": {"bucket": 1}, "credentials": sealed}
        configured = hub.send(AgentTask.CONFIGURE_TARGET, {"order": target}, queue=site)
        assert hub.finished(configured)["state"] == "SUCCESS"

        listed = hub.send(AgentTask.LIST_TARGET, {"order": {"endpoint_name": "fs-1-archive", "path": "",
                                                            "max_items": 100, "marker": ""}}, queue=site)
        page = hub.finished(listed)
        assert page["state"] == "SUCCESS", page
        assert page["results"]["directories"] == [{"name": "old", "path": "old/", "size": None,
                                                   "type": "directory"}]

        payload = os.urandom(300_000)
        source = mountpoint / "results.bin"
        source.write_bytes(payload)
        migrated = hub.send(HsmTask.MIGRATE, {"paths": [{"path": str(source)}], "jobid": "job-1",
                                              "target": "fs-1-archive"}, queue=f"{site}.transfer")
        done = hub.finished(migrated)
        assert done["state"] == "SUCCESS", done
        [outcome] = done["results"]["outcomes"]
        assert outcome["status"] == "processed", outcome
        assert done["results"]["summary"] == {"processed": 1}
        remote_bytes = (remote / outcome["key"]).read_bytes()
        assert hashlib.sha256(remote_bytes).digest() == hashlib.sha256(payload).digest()
        assert read_record(str(source)).state == HsmState.MIGRATED
        assert source.stat().st_size == len(payload)

        # --- a redelivered configure after a removal leaves the target removed ----------------------
        removed = hub.send(AgentTask.REMOVE_TARGET, {"order": target}, queue=site)
        assert hub.finished(removed)["results"]["removed"] is True
        hub.send(AgentTask.CONFIGURE_TARGET, {"order": target}, queue=site, task_id=configured)
        assert hub.finished(configured)["state"] == "SUCCESS"  # its first outcome, sent again
        relisted = hub.send(AgentTask.LIST_TARGET, {"order": {"endpoint_name": "fs-1-archive", "path": "",
                                                              "max_items": 100, "marker": ""}}, queue=site)
        failed = hub.finished(relisted)
        assert failed["state"] == "FAILURE" and "not configured" in failed["error"]

        # --- SIGTERM: a clean, prompt stop of every process ------------------------------------------
        took = agent.stop()
        assert agent.process.returncode == 0, agent.text()
        assert took < 20, f"stopping took {took:.1f}s"
        for pid in workers.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert "agent stopped" in agent.text()
        assert key not in agent.text()
    except BaseException:
        print(agent.text()[-6000:])
        raise
    finally:
        agent.kill()


def test_a_worker_that_dies_stops_the_agent_with_an_error(tmp_path: Path):
    """Heartbeats must never announce a queue nobody consumes: the supervisor exits 1 (systemd
    restarts it) when a queue's worker disappears."""
    env = {"AGENT_BROKER_DIR": str(tmp_path / "broker"), "AGENT_STATE_DIR": str(tmp_path / "state"),
           "AGENT_HEARTBEAT_INTERVAL": "1", "AGENT_QUEUES": "default=1,transfer=1"}
    hub = HubSide("filesystem://localhost//", filesystem_options(tmp_path / "broker"), "hub")
    agent = start_agent("lab", env, tmp_path / "agent.log")
    try:
        beat = hub.wait_for(lambda name, kw: name == HubTask.HEARTBEAT, what="a heartbeat")["beat"]
        os.kill(beat["info"]["workers"]["transfer"], signal.SIGKILL)
        assert agent.process.wait(30) == 1
        assert "worker(s) for queue(s) transfer exited" in agent.text()
        with pytest.raises(ProcessLookupError):
            os.kill(beat["info"]["workers"]["default"], 0)
    finally:
        agent.kill()
        hub.close()
