"""The workflow engine end to end, every part a real process (``tests/integration/e2e_estate.py``):
Redis, a migrated hub database, the web server, the hub worker, two agents for two sites sharing
one space path (each in its own mount namespace, so the path shows each a different folder),
and a moto S3 server as the target both sites use.

Each scenario launches through the API, waits for the job's final state, reads the per-path
results from ``/api/jobs/{id}/files/`` and checks the bytes by SHA-256: on disk (stubs keep
their size and release their blocks; recalled, premigrated and sent files are identical) and in
the bucket (one object per file, holding the file's bytes). The scenarios share one estate and
each works in a folder of its own; they run in file order (the target outage empties the
bucket, so the scenarios that recall come before it). Under pytest-xdist each worker that gets
some of these tests builds an estate of its own (names, queues and ports are unique per estate).

The in-process version of these scenarios (one process, an in-memory broker) is
``tests/workflows/test_engine.py``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.integration.e2e_estate import (
    Estate,
    allocated,
    frozen,
    kill_tree,
    manifest,
    unshare_works,
    write_files,
)
from tests.integration.test_celery_wiring import redis_reachable
from workflows.states import JobState, LaunchedVia, PathState, TaskState

pytestmark = [pytest.mark.redis, pytest.mark.emulators]

DEFAULT_BATCH = 100


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    require(redis_reachable(), "needs Redis on 127.0.0.1:6379")
    if not unshare_works():
        pytest.fail("`unshare -m true` failed: the two agents need mount namespaces of their own (run as root, "
                    "or where unprivileged user and mount namespaces are allowed)")
    estate = Estate(tmp_path_factory.mktemp("e2e"))
    try:
        estate.start()
        yield estate
    finally:
        estate.stop()


# --- checks ----------------------------------------------------------------------------------------

def folder(estate: Estate, name: str) -> Path:
    """A scenario's folder in the space, as the hub and the agents name it."""
    return estate.space_path / name


def results(estate: Estate, job: dict[str, Any]) -> dict[str, str]:
    """Path (relative to the space) -> its state in the job's per-path results."""
    return {str(Path(path).relative_to(estate.space_path)): row["state"]
            for path, row in estate.files(job["id"]).items()}


def assert_in_bucket(estate: Estate, scenario: str, files: dict[str, bytes]) -> None:
    """Each file is in the bucket exactly once (no second copy under a sibling key), holding its
    bytes."""
    objects = {key: data for key, data in estate.objects().items() if f"/{scenario}/" in f"/{key}"}
    by_file: dict[str, list[str]] = {}
    for key in objects:
        relative = key.split(f"{scenario}/", 1)[1].split("~", 1)[0]
        by_file.setdefault(relative, []).append(key)
    assert sorted(by_file) == sorted(files), (sorted(by_file), sorted(files))
    for relative, keys in by_file.items():
        assert len(keys) == 1, f"{relative} is in the bucket {len(keys)} times: {keys}"
        assert sha256_of(objects[keys[0]]) == sha256_of(files[relative]), f"{keys[0]} does not hold {relative}"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_stubs(site_folder: Path, files: dict[str, bytes]) -> None:
    """Each file is a stub: its size kept, its blocks released."""
    for relative, data in files.items():
        stub = site_folder / relative
        assert stub.stat().st_size == len(data), f"{relative}: size not kept"
        assert allocated(stub) < len(data), f"{relative}: blocks not released"


def set_batch_size(estate: Estate, site: str, size: int) -> None:
    """Files per task on ``site`` (scenarios that need many tasks lower it, then put it back)."""
    estate.call("PATCH", f"/api/sites/{estate.sites[site].id}/", {"file_batch_size": size})


# --- scenarios -------------------------------------------------------------------------------------

def test_migrate_leaves_stubs_and_recall_brings_every_byte_back(estate: Estate):
    scenario = folder(estate, "migrate")
    local = estate.on_site("alpha", scenario)
    files = write_files(local, 12)
    before = manifest(local)

    job = estate.launch("migrate", estate.sites["alpha"].name, [str(scenario)])
    assert job["state"] == JobState.PENDING and job["launched_via"] == LaunchedVia.API
    job = estate.wait_job(job["id"], [JobState.SUCCESS])

    counts = job["counts"]
    assert (counts["paths_total"], counts["processed"], counts["failed"]) == (12, 12, 0)
    assert counts["bytes_processed"] == sum(len(data) for data in files.values())
    assert job["progress"] == 100.0
    assert results(estate, job) == {f"migrate/{relative}": PathState.PROCESSED for relative in files}
    progress = estate.get(f"/api/jobs/{job['id']}/progress/")
    assert (progress["progress"], progress["paths_done"], progress["discovery_complete"]) == (100.0, 12, True)
    statistics = estate.get(f"/api/jobs/{job['id']}/statistics/")
    assert statistics[PathState.PROCESSED] == {"files": 12, "bytes": counts["bytes_processed"]}
    assert_stubs(local, files)
    assert_in_bucket(estate, "migrate", files)
    tasks = estate.tasks(job["id"])
    assert {t["state"] for t in tasks} == {TaskState.SUCCESS}
    assert {t["tasktype"] for t in tasks} == {"recursive_navigate", "migrate"}

    recall = estate.launch("recall", estate.sites["alpha"].name, [str(scenario)])
    recall = estate.wait_job(recall["id"], [JobState.SUCCESS])
    assert recall["counts"]["processed"] == 12
    assert manifest(local) == before
    for relative, data in files.items():
        assert allocated(local / relative) >= len(data)


def test_premigrate_copies_to_the_bucket_and_keeps_the_content(estate: Estate):
    scenario = folder(estate, "premigrate")
    local = estate.on_site("alpha", scenario)
    files = write_files(local, 6, subdirs=2)
    before = manifest(local)

    job = estate.launch("premigrate", estate.sites["alpha"].name, [str(scenario)])
    job = estate.wait_job(job["id"], [JobState.SUCCESS])

    assert job["counts"]["processed"] == 6
    assert results(estate, job) == {f"premigrate/{relative}": PathState.PROCESSED for relative in files}
    assert manifest(local) == before
    for relative, data in files.items():
        assert allocated(local / relative) >= len(data), f"{relative}: premigrate released blocks"
    assert_in_bucket(estate, "premigrate", files)


def test_send_with_hydrate_gives_the_destination_site_identical_bytes(estate: Estate):
    alpha, beta = estate.sites["alpha"], estate.sites["beta"]
    scenario = folder(estate, "send")
    source = estate.on_site("alpha", scenario)
    files = write_files(source, 6, subdirs=2)
    before = manifest(source)
    assert not estate.on_site("beta", scenario).exists()

    job = estate.launch("send", alpha.name, [str(scenario)], fields={"destinationsite": beta.name, "hydrate": True})
    job = estate.wait_job(job["id"], [JobState.SUCCESS])

    assert job["counts"]["processed"] == 6 and job["counts"]["failed"] == 0
    assert results(estate, job) == {f"send/{relative}": PathState.PROCESSED for relative in files}
    destination = estate.on_site("beta", scenario)
    assert manifest(destination) == before  # hydrated on beta: the same bytes, resident
    for relative, data in files.items():
        assert allocated(destination / relative) >= len(data), f"{relative}: not hydrated on beta"
    assert manifest(source) == before  # premigrated on alpha: content kept
    assert_in_bucket(estate, "send", files)
    # Each step ran where the workflow says: premigrate on the source, reverse stub on the destination.
    steps = {(t["tasktype"], t["site"]) for t in estate.tasks(job["id"], internal="false")}
    assert steps == {("migrate", alpha.name), ("reverse_stub", beta.name)}


def test_pause_holds_the_job_and_resume_finishes_it(estate: Estate):
    scenario = folder(estate, "pause")
    local = estate.on_site("alpha", scenario)
    files = write_files(local, 10, subdirs=2)
    set_batch_size(estate, "alpha", 2)
    try:
        # The agent is held while the job starts and is paused, so the discovery is sent but has
        # not run: the pause must hold everything it finds (on a fast machine, an agent left
        # running could finish the whole job before the pause arrived).
        with frozen(estate.sites["alpha"].agent):
            job = estate.launch("migrate", estate.sites["alpha"].name, [str(scenario)])
            pausing = estate.call("POST", f"/api/jobs/{job['id']}/pause/", expect=(202,))
            assert pausing["state"] == JobState.PAUSING, "the discovery is in flight: pausing, not paused"
        paused = estate.wait_job(job["id"], [JobState.PAUSED])
        time.sleep(2)  # nothing moves while paused
        held = estate.job(job["id"])
        assert held["state"] == JobState.PAUSED and held["counts"] == paused["counts"]
        assert held["counts"]["processed"] == 0, "a file moved while the job was paused"
        assert estate.tasks(job["id"], state=TaskState.PENDING), "no task is held back by the pause"

        resumed = estate.call("POST", f"/api/jobs/{job['id']}/resume/", expect=(202,))
        assert resumed["state"] in (JobState.PENDING, JobState.STARTED)
        job = estate.wait_job(job["id"], [JobState.SUCCESS])
    finally:
        set_batch_size(estate, "alpha", DEFAULT_BATCH)

    assert job["counts"]["processed"] == len(files)
    assert results(estate, job) == {f"pause/{relative}": PathState.PROCESSED for relative in files}
    assert_stubs(local, files)
    assert_in_bucket(estate, "pause", files)


def test_cancel_mid_job_stops_the_rest_and_leaves_untouched_files_intact(estate: Estate):
    scenario = folder(estate, "cancel")
    local = estate.on_site("alpha", scenario)
    files = write_files(local, 80, subdirs=2, step=97)
    before = manifest(local)
    set_batch_size(estate, "alpha", 1)  # one task per file: many tasks, a job long enough to catch
    try:
        job = estate.launch("migrate", estate.sites["alpha"].name, [str(scenario)])
        running = estate.poll(lambda: (j := estate.job(job["id"]))["counts"]["processed"] >= 2 and j,
                              "the first files migrated", interval=0.1)
        assert running["state"] in (JobState.STARTED,), running
        # Held while the cancel is taken, so a fast agent cannot finish the job in between.
        with frozen(estate.sites["alpha"].agent):
            cancelling = estate.call("POST", f"/api/jobs/{job['id']}/cancel/", expect=(202,))
        assert cancelling["state"] in (JobState.CANCELLING, JobState.DEQUEUING, JobState.CANCELLED)
        job = estate.wait_job(job["id"], [JobState.CANCELLED])
    finally:
        set_batch_size(estate, "alpha", DEFAULT_BATCH)

    rows = results(estate, job)
    assert set(rows) <= {f"cancel/{relative}" for relative in files}
    assert set(rows.values()) <= {PathState.PROCESSED, PathState.ABORTED}, rows
    migrated = {path.split("/", 1)[1] for path, state in rows.items() if state == PathState.PROCESSED}
    assert 2 <= len(migrated) < len(files), f"{len(migrated)} of {len(files)} migrated: the cancel did not stop it"
    counts = job["counts"]
    assert counts["processed"] == len(migrated) and counts["aborted"] == len(rows) - len(migrated)
    assert not estate.tasks(job["id"], state=TaskState.PENDING)
    assert not estate.tasks(job["id"], state=TaskState.STARTED)
    assert_stubs(local, {relative: files[relative] for relative in migrated})
    assert_in_bucket(estate, "cancel", {relative: files[relative] for relative in migrated})
    untouched = {relative for relative in files if relative not in migrated}
    assert {relative: sha for relative, sha in manifest(local).items() if relative in untouched} == {
        relative: before[relative] for relative in untouched}
    for relative in untouched:
        assert allocated(local / relative) >= len(files[relative]), f"{relative} was released but not reported"


def test_resubmit_after_a_target_outage_migrates_what_failed(estate: Estate):
    scenario = folder(estate, "outage")
    local = estate.on_site("alpha", scenario)
    files = write_files(local, 3, subdirs=1)
    before = manifest(local)

    estate.stop_moto()
    try:
        failed = estate.launch("migrate", estate.sites["alpha"].name, [str(scenario)])
        failed = estate.wait_job(failed["id"], [JobState.FAILURE])
    finally:
        estate.start_moto()  # the same port; a new, empty bucket of the same name

    rows = estate.files(failed["id"])
    assert {path: row["state"] for path, row in rows.items()} == {
        str(scenario / relative): PathState.FAILED for relative in files}
    assert all(row["message"] for row in rows.values()), rows
    assert estate.get(f"/api/jobstats/?job={failed['id']}&state={PathState.FAILED}")["count"] == len(files)
    assert manifest(local) == before  # nothing was released while the target was down

    again = estate.call("POST", f"/api/jobs/{failed['id']}/resubmit/", expect=(202,))
    assert again["id"] != failed["id"] and again["resubmitted_from"] == failed["id"]
    assert again["launched_via"] == LaunchedVia.RESUBMIT
    assert sorted(again["paths"]) == sorted(str(scenario / relative) for relative in files)
    again = estate.wait_job(again["id"], [JobState.SUCCESS])
    assert again["counts"]["processed"] == len(files)
    assert results(estate, again) == {f"outage/{relative}": PathState.PROCESSED for relative in files}
    assert_stubs(local, files)
    assert_in_bucket(estate, "outage", files)


def test_an_agent_killed_mid_job_is_replaced_and_every_file_is_migrated_once(estate: Estate):
    alpha = estate.sites["alpha"]
    scenario = folder(estate, "killed")
    local = estate.on_site("alpha", scenario)
    # Batches of four files of a few MiB: a task runs long enough to be caught running.
    files = write_files(local, 16, subdirs=2, size=3 * 1024 * 1024, step=4099)
    # One worker process: the only message it holds unacknowledged is the task it runs, which
    # the hub sees started. With two, the second could be taken from the broker and the agent
    # killed before its start was reported: a message Redis gives back only after the
    # visibility timeout (12 h), which the sweeper waits as long for (agent/README.md,
    # "Delivery guarantees").
    assert alpha.agent is not None
    kill_tree(alpha.agent)
    estate.start_agent(alpha, queues="default=1")
    estate.wait_online("alpha")
    set_batch_size(estate, "alpha", 4)
    try:
        job = estate.launch("migrate", alpha.name, [str(scenario)])
        estate.poll(lambda: estate.tasks(job["id"], state=TaskState.STARTED, tasktype="migrate"),
                    "a migrate task running", interval=0.1)
        assert alpha.agent is not None
        kill_tree(alpha.agent)  # SIGKILL, mid-batch: no report, no warm shutdown
        estate.call("PATCH", "/api/configurations/", {"node_health_last_heartbeat_interval": 10})
        try:
            estate.wait_online("alpha", online=False, timeout=60)
            time.sleep(1)  # the hub worker applies whatever reports were already on their way
            running = estate.tasks(job["id"], state=TaskState.STARTED)
            assert running, "the killed agent's task finished before the kill: nothing to recover"
            swept = estate.sweep()
            assert swept["requeued"] == len(running), swept
            waiting = estate.job(job["id"])
            assert "no live node" in waiting["state_reason"], waiting

            estate.start_agent(alpha)
            estate.wait_online("alpha")
            estate.sweep()  # sends what waited for a live node
            job = estate.wait_job(job["id"], [JobState.SUCCESS])
        finally:
            estate.call("PATCH", "/api/configurations/", {"node_health_last_heartbeat_interval": 120})
    finally:
        set_batch_size(estate, "alpha", DEFAULT_BATCH)

    rows = results(estate, job)
    assert set(rows) == {f"killed/{relative}" for relative in files}
    # A file the killed batch finished before the kill is found migrated by the retry: skipped.
    assert set(rows.values()) <= {PathState.PROCESSED, PathState.SKIPPED}, rows
    assert job["counts"]["failed"] == 0 and job["counts"]["processed"] >= 1
    failed = estate.tasks(job["id"], state=TaskState.FAILURE)
    assert len(failed) == len(running)
    for task in failed:
        detail = estate.get(f"/api/tasks/{task['id']}/")
        assert "stopped sending heartbeats" in detail["result"]["error"], detail
    assert_stubs(local, files)
    assert_in_bucket(estate, "killed", files)
