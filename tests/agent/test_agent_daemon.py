"""The agent as a real process on a real broker, seen from the hub's side of the broker.

``python -m agent run`` runs as a subprocess (the filesystem transport in a temporary folder,
and Redis database 13); the test plays the hub with a plain Celery app and kombu consumer that
know nothing but ``agent.contract``: it reads the heartbeats and the start-up inventory from the
hub's queue, sends orders and a data task, reads the ``TaskResult`` reports, redelivers an order,
cancels a running data task through the node's control queue and finally stops the agent with
SIGTERM.

The data tasks' reporting (hub task name, node, progress, options a task does not take, a cancel
seen before the start) is also checked in-process, through the agent's own Celery app run
eagerly with its reports collected instead of published.
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

from agent import app as agent_app
from agent.actions import STAGE_GROUP
from agent.app import Runtime
from agent.config import load_config
from agent.contract import AgentTask, HsmTask, HubTask, control_queue
from agent.drivers.fs import FolderStore
from agent.hsm.state import HsmState, read_record
from agent.transport import AtomicFilesystemTransport
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
        if self.broker_url.startswith("filesystem://"):
            # Publish whole files, as the agent does: the data tasks here are large messages.
            self.app.conf.broker_transport = AtomicFilesystemTransport
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

    def result(self, task_id: str, state: str, timeout: float = 60.0, *,
               report: str = HubTask.TASK_RESULT) -> dict[str, Any]:
        """A ``TaskResult`` in ``state`` for ``task_id`` (orders report to ``TASK_RESULT``, data
        tasks to ``JOB_TASK_RESULT``)."""
        return self.wait_for(lambda name, kw: name == report and kw["report"]["task_id"] == task_id
                             and kw["report"]["state"] == state, timeout, f"{state} for {task_id}")["report"]

    def finished(self, task_id: str, timeout: float = 60.0, *, report: str = HubTask.TASK_RESULT) -> dict[str, Any]:
        return self.wait_for(lambda name, kw: name == report and kw["report"]["task_id"] == task_id
                             and kw["report"]["state"] in ("SUCCESS", "FAILURE"), timeout,
                             f"the end of {task_id}")["report"]

    def reports_of(self, task_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Every report seen so far about ``task_id``, with the hub task it came under."""
        return [(name, kw["report"]) for name, kw in self.seen
                if isinstance(kw.get("report"), dict) and kw["report"].get("task_id") == task_id]


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
        control = beat["info"]["control_worker"]
        assert control not in workers.values()
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
                                              "target": "fs-1-archive", "lock_level": "partial"},
                            queue=f"{site}.transfer")
        done = hub.finished(migrated, report=HubTask.JOB_TASK_RESULT)
        assert done["state"] == "SUCCESS", done
        assert done["node"] == "nsd1"
        [outcome] = done["results"]["outcomes"]
        assert outcome["status"] == "processed", outcome
        assert done["results"]["summary"] == {"processed": 1} and done["results"]["cancelled"] is False
        assert {name for name, _ in hub.reports_of(migrated)} == {HubTask.JOB_TASK_RESULT}
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
        for pid in [*workers.values(), control]:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert "agent stopped" in agent.text()
        assert key not in agent.text()
    except BaseException:
        print(agent.text()[-6000:])
        raise
    finally:
        agent.kill()


@pytest.mark.parametrize("victim", ["transfer", "control"])
def test_a_worker_that_dies_stops_the_agent_with_an_error(tmp_path: Path, victim: str):
    """Heartbeats must never announce a queue nobody consumes, nor a node cancels cannot reach:
    the supervisor exits 1 (systemd restarts it) when a queue's worker or the control worker
    disappears."""
    env = {"AGENT_BROKER_DIR": str(tmp_path / "broker"), "AGENT_STATE_DIR": str(tmp_path / "state"),
           "AGENT_HEARTBEAT_INTERVAL": "1", "AGENT_QUEUES": "default=1,transfer=1"}
    hub = HubSide("filesystem://localhost//", filesystem_options(tmp_path / "broker"), "hub")
    agent = start_agent("lab", env, tmp_path / "agent.log")
    try:
        beat = hub.wait_for(lambda name, kw: name == HubTask.HEARTBEAT, what="a heartbeat")["beat"]
        info = beat["info"]
        os.kill(info["control_worker"] if victim == "control" else info["workers"][victim], signal.SIGKILL)
        assert agent.process.wait(30) == 1
        expected = "the control worker exited" if victim == "control" else "worker(s) for queue(s) transfer exited"
        assert expected in agent.text()
        with pytest.raises(ProcessLookupError):
            os.kill(info["workers"]["default"], 0)
    finally:
        agent.kill()
        hub.close()


def test_a_cancel_on_the_control_queue_stops_a_running_task_while_every_slot_is_busy(tmp_path: Path, key: str):
    """The data task occupies the only slot of the only queue; the cancel still arrives (the
    node's control worker serves it), and the task answers the paths it had not reached
    ``aborted``. A task of the cancelled job delivered afterwards touches no file."""
    data, remote = tmp_path / "data", tmp_path / "remote"
    data.mkdir()
    remote.mkdir()
    env = {"AGENT_BROKER_URL": "filesystem://", "AGENT_BROKER_DIR": str(tmp_path / "broker"), "AGENT_NODE": "nsd1",
           "AGENT_STATE_DIR": str(tmp_path / "state"), "AGENT_ROOTS": str(data), "AGENT_KEY": key,
           "AGENT_HEARTBEAT_INTERVAL": "1", "AGENT_QUEUES": "default=1"}
    hub = HubSide("filesystem://localhost//", filesystem_options(tmp_path / "broker"), "hub")
    agent = start_agent("lab", env, tmp_path / "agent.log")
    try:
        hub.wait_for(lambda name, kw: name == HubTask.HEARTBEAT, what="a heartbeat")
        sealed = Fernet(key.encode()).encrypt(b"{}").decode()
        target = {"endpoint_name": "fs-1-archive", "target": {"id": 1, "name": "archive"},
                  "bucket": {"id": 1, "name": "archive", "storage_type": "fs", "migration_target_folder": str(remote)},
                  "credentials_ref": {"bucket": 1}, "credentials": sealed}
        assert hub.finished(hub.send(AgentTask.CONFIGURE_TARGET, {"order": target}, queue="lab"))["state"] == "SUCCESS"

        # Enough small files that the batch outlives the cancel's journey by far: broker polling,
        # the control worker, the task's once-a-second check. Each has a second link outside the
        # batch, so the batch takes the general path (about a millisecond a file): the small-file
        # lane's C core would finish 15,000 such files in about a second, before a cancel arrives.
        count = 15_000
        paths = []
        (data / "links").mkdir()
        for i in range(count):
            path = data / f"f{i:05d}"
            path.write_bytes(b"x" * 16)
            os.link(path, data / "links" / path.name)
            paths.append({"path": str(path)})
        running = hub.send(HsmTask.MIGRATE, {"paths": paths, "jobid": "job-7", "target": "fs-1-archive"}, queue="lab")
        hub.result(running, "STARTED", report=HubTask.JOB_TASK_RESULT)
        deadline = time.monotonic() + 60
        while sum(1 for _ in os.scandir(remote)) < 20:  # the batch is under way
            assert time.monotonic() < deadline, "the migration never started"
            time.sleep(0.05)
        hub.send(AgentTask.CANCEL, {"order": {"task_ids": [running, "job-8"]}}, queue=control_queue("lab", "nsd1"))

        done = hub.finished(running, timeout=120, report=HubTask.JOB_TASK_RESULT)
        assert done["state"] == "SUCCESS", done
        results = done["results"]
        assert results["cancelled"] is True
        summary = results["summary"]
        assert 0 < summary.get("processed", 0) < count and summary.get("aborted", 0) > 0, summary
        assert sum(summary.values()) == count and set(summary) <= {"processed", "aborted"}
        aborted = [o for o in results["outcomes"] if o["status"] == "aborted"]
        assert all("cancelled" in o["message"] for o in aborted)  # files in flight stop too
        untouched = [o["path"] for o in aborted if o["message"] == "not attempted: cancelled"]
        assert untouched and read_record(untouched[-1]) is None  # still unmanaged
        assert f"cancel requested for {running}" in agent.text()

        # A task of a cancelled job arriving later is answered at once, every path aborted, and
        # its unknown target is never opened.
        late = hub.send(HsmTask.MIGRATE, {"paths": paths[:3], "jobid": "job-8", "target": "nowhere"}, queue="lab")
        answer = hub.finished(late, report=HubTask.JOB_TASK_RESULT)
        assert answer["state"] == "SUCCESS" and answer["results"]["summary"] == {"aborted": 3}, answer

        assert agent.stop() < 20 and agent.process.returncode == 0, agent.text()
    except BaseException:
        print(agent.text()[-6000:])
        raise
    finally:
        agent.kill()
        hub.close()


# --- data task reporting, in process -----------------------------------------------------------------

class Reports:
    """What the runtime would publish to the hub's queue, collected."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, kwargs: dict[str, Any]) -> None:
        json.dumps(kwargs)  # what the broker would carry: JSON only
        self.sent.append((name, kwargs))

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [kw["report"] for _, kw in self.sent if kw["report"]["task_id"] == task_id]


@pytest.fixture
def runtime(tmp_path: Path, key: str) -> tuple[Runtime, Reports, Path, Path]:
    """An agent runtime (never connected to its broker: reports are collected) with a folder target
    ``archive``; returns it with the reports, the root and the target folder."""
    data, remote = tmp_path / "data", tmp_path / "remote"
    data.mkdir()
    remote.mkdir()
    config = load_config(environ={"AGENT_SITE": "lab", "AGENT_NODE": "nsd1", "AGENT_ROOTS": str(data),
                                  "AGENT_STATE_DIR": str(tmp_path / "state"), "AGENT_KEY": key,
                                  "AGENT_BROKER_DIR": str(tmp_path / "broker")})
    rt = Runtime(config)
    rt.state.ensure()
    rt.state.save_target("archive", {"target": {"name": "archive"}, "credentials": {}, "bucket": {
        "storage_type": "fs", "migration_target_folder": str(remote), "advanced_settings": {"fsync": False}}})
    reports = Reports()
    rt.send = reports  # type: ignore[method-assign]
    return rt, reports, data, remote


def run_task(rt: Runtime, name: str, task_id: str, **kwargs: Any) -> None:
    rt.app.tasks[name].apply(kwargs=kwargs, task_id=task_id)


def test_data_tasks_report_to_the_job_task_result_with_the_node(runtime):
    rt, reports, data, _ = runtime
    (data / "a.txt").write_bytes(b"a" * 100)

    run_task(rt, HsmTask.MIGRATE, "t-1", paths=[{"path": str(data / "a.txt")}], jobid=3, target="archive")

    assert {name for name, _ in reports.sent} == {HubTask.JOB_TASK_RESULT}
    started, final = reports.of("t-1")
    assert started["state"] == "STARTED" and final["state"] == "SUCCESS"
    assert started["node"] == final["node"] == "nsd1"
    assert final["results"]["jobid"] == 3 and final["results"]["summary"] == {"processed": 1}
    assert final["results"]["cancelled"] is False


def test_a_batch_that_fails_as_a_whole_reports_failure_with_the_node(runtime):
    rt, reports, data, _ = runtime

    run_task(rt, HsmTask.MIGRATE, "t-2", paths=[{"path": str(data / "a")}], target="unknown-target")

    final = reports.of("t-2")[-1]
    assert final["state"] == "FAILURE" and "not configured" in final["error"] and final["node"] == "nsd1"


def test_options_a_task_does_not_take_are_ignored_and_logged_once(runtime, caplog):
    rt, reports, data, _ = runtime
    for name in ("a", "b"):
        (data / name).write_bytes(b"x")
    caplog.set_level("INFO", logger="agent.app")

    for task_id, name in (("t-3", "a"), ("t-4", "b")):
        run_task(rt, HsmTask.MIGRATE, task_id, paths=[{"path": str(data / name)}], target="archive",
                 lock_level="partial", destinationsite="other")

    assert [r["state"] for r in reports.of("t-3")] == ["STARTED", "SUCCESS"]
    assert reports.of("t-4")[-1]["results"]["summary"] == {"processed": 1}
    ignored = [r.getMessage() for r in caplog.records if "not used by this task" in r.getMessage()]
    assert ignored == [f"{HsmTask.MIGRATE}: option(s) destinationsite, lock_level not used by this task, ignored"]


def test_options_a_task_takes_are_kept(runtime):
    rt, reports, data, _ = runtime
    (data / "keep.bin").write_bytes(b"k" * 1000)

    run_task(rt, HsmTask.MIGRATE, "t-5", paths=[{"path": str(data / "keep.bin")}], target="archive",
             premigrate=True, lock_level="implicit")
    run_task(rt, HsmTask.MIGRATE, "t-6", paths=[{"path": str(data / "keep.bin")}], target="archive",
             premigrate="yes")

    assert reports.of("t-5")[-1]["results"]["summary"] == {"processed": 1}
    assert read_record(str(data / "keep.bin")).state == HsmState.PREMIGRATED
    bad = reports.of("t-6")[-1]
    assert bad["state"] == "FAILURE" and "premigrate must be true or false" in bad["error"]


def test_long_batches_report_progress(runtime, monkeypatch):
    rt, reports, data, _ = runtime
    monkeypatch.setattr(agent_app, "PROGRESS_INTERVAL", 0.0)
    paths = []
    count = 2 * STAGE_GROUP + 5  # small files report per group of the small-file lane: three groups
    for i in range(count):
        (data / f"p{i}").write_bytes(b"p" * 10)
        paths.append({"path": str(data / f"p{i}")})

    run_task(rt, HsmTask.MIGRATE, "t-7", paths=paths, target="archive")

    states = [r["state"] for r in reports.of("t-7")]
    assert states[0] == "STARTED" and states[-1] == "SUCCESS" and "PROGRESS" in states
    progress = [r for r in reports.of("t-7") if r["state"] == "PROGRESS"]
    assert all(r["node"] == "nsd1" and set(r["results"]) == {"paths_done", "paths_total", "bytes_done",
                                                             "bytes_total"} for r in progress)
    assert all(r["results"]["paths_total"] == count and r["results"]["paths_done"] < count for r in progress)


def test_progress_waits_for_the_interval(runtime):
    rt, reports, data, _ = runtime
    (data / "quick").write_bytes(b"q")

    run_task(rt, HsmTask.MIGRATE, "t-8", paths=[{"path": str(data / "quick")}], target="archive")

    assert [r["state"] for r in reports.of("t-8")] == ["STARTED", "SUCCESS"]


def test_a_task_cancelled_before_it_starts_touches_no_file_and_opens_no_target(runtime):
    rt, reports, data, remote = runtime
    (data / "stay.bin").write_bytes(b"s" * 100)
    rt.state.request_cancel("job-5")

    run_task(rt, HsmTask.MIGRATE, "t-9", paths=[{"path": str(data / "stay.bin")}, {"path": str(data / "gone")}],
             jobid="job-5", target="not-even-configured")

    final = reports.of("t-9")[-1]
    assert final["state"] == "SUCCESS" and final["results"]["cancelled"] is True
    assert [(o["path"], o["status"], o["message"]) for o in final["results"]["outcomes"]] == [
        (str(data / "stay.bin"), "aborted", "not attempted: cancelled"),
        (str(data / "gone"), "aborted", "not attempted: cancelled")]
    assert read_record(str(data / "stay.bin")) is None and list(remote.iterdir()) == []


def test_a_cancel_order_raises_the_flags_and_answers_nothing(runtime):
    rt, reports, _, _ = runtime

    run_task(rt, AgentTask.CANCEL, "c-1", order={"task_ids": ["t-10", 42]})
    run_task(rt, AgentTask.CANCEL, "c-2", order={"task_ids": "t-11"})  # malformed: dropped
    run_task(rt, AgentTask.CANCEL, "c-3", order=None)

    assert rt.state.cancel_requested(["t-10"]) and rt.state.cancel_requested(["42"])
    assert not rt.state.cancel_requested(["t-11"])
    assert reports.sent == []


def test_discovery_is_served_as_a_data_task(runtime):
    rt, reports, data, _ = runtime
    (data / "sub").mkdir()
    (data / "f").write_text("f")

    run_task(rt, HsmTask.RECURSIVE_NAVIGATE, "d-1", paths=[{"path": str(data)}], max_entries=10,
             lock_level="partial")

    [outcome] = reports.of("d-1")[-1]["results"]["outcomes"]
    assert [e["path"] for e in outcome["entries"]] == [str(data / "f"), str(data / "sub")]
    assert outcome["directories"] == [str(data / "sub")]
