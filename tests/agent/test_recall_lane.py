"""Recall of small stubs in the lane's processes (``agent.lane.run_recall_group``): the same
outcome, bytes and records as the general path, whatever the lane hands back, and nothing
lost when a worker dies."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from agent import actions, lane
from agent.drivers.fs import FolderStore
from agent.drivers.memory import MemoryStore
from agent.drivers.posix import PosixFilesystem
from agent.hsm.state import HsmState, read_record
from tests.agent.hsm_fixtures import manifest, sha256_file, write_random

CHUNK = 64 * 1024
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pool(monkeypatch):
    """A lane pool of two processes, made here and closed after the test."""
    made = lane.LanePool(2)
    monkeypatch.setattr(actions, "shared_pool", lambda workers: made)
    yield made
    made.close()


def ctx(space: Path, targets: dict[str, Path], lane_workers: int | None = 2) -> actions.ActionContext:
    return actions.ActionContext(roots=[space], open_target=lambda name: FolderStore(targets[name]),
                                 chunk_size=CHUNK, lane_workers=lane_workers)


def tree(space: Path, count: int, prefix: str = "") -> list[Path]:
    return [write_random(space / f"d{i % 3}" / f"{prefix}f {i}.bin", (i * 1931) % CHUNK, seed=i)
            for i in range(count)]


def items(paths: list[Path]) -> list[dict]:
    return [{"path": str(p)} for p in paths]


def statuses(out: list[dict]) -> Counter:
    return Counter(o["status"] for o in out)


def stubbed(space: Path, targets: dict[str, Path], name: str, files: list[Path]) -> None:
    out = actions.migrate(ctx(space, targets, lane_workers=None), items(files), target=name)
    assert statuses(out) == {"processed": len(files)}, out


def test_the_lane_recalls_exactly_as_the_general_path_does(tmp_path, pool):
    results = {}
    for how, workers in (("lane", 2), ("general", None)):
        space, target = tmp_path / how / "space", tmp_path / how / "target"
        target.mkdir(parents=True)
        files = tree(space, 300)
        before = manifest(space)
        stubbed(space, {"t": target}, "t", files)
        out = actions.recall(ctx(space, {"t": target}, lane_workers=workers), items(files))
        assert statuses(out) == {"processed": len(files)}
        assert manifest(space) == before  # bytes, mode and mtime
        assert all(read_record(f).state == HsmState.HYDRATED for f in files)
        results[how] = [(o["status"], o["message"], o["key"], o["path"].split("/space/")[1]) for o in out]
    assert results["lane"] == results["general"]
    assert (pool.completed, pool.handed_back) == (2, 0)  # 256 + 44 files, both groups in the lane


def test_what_the_lane_cannot_take_goes_the_general_way(tmp_path, pool):
    space = tmp_path / "space"
    targets = {"t": tmp_path / "t", "u": tmp_path / "u"}
    for folder in targets.values():
        folder.mkdir()
    on_t, on_u = tree(space, 20, "t-"), tree(space, 20, "u-")
    resident = tree(space, 5, "resident-")
    linked = write_random(space / "linked.bin", 5000, seed=99)
    os.link(linked, space / "second-link.bin")
    before = manifest(space)
    stubbed(space, targets, "t", [*on_t, linked])
    stubbed(space, targets, "u", on_u)

    everything = [*on_u, *on_t, *resident, linked]  # the group's first record names u
    out = actions.recall(ctx(space, targets), items(everything))
    by_path = {o["path"]: o for o in out}
    assert all(by_path[str(f)]["status"] == "processed" for f in [*on_t, *on_u, linked])
    assert all(by_path[str(f)]["status"] == "skipped" for f in resident)
    assert manifest(space) == before
    assert (pool.completed, pool.handed_back) == (1, 0)


@pytest.mark.parametrize(("workers", "groups"), [(0, 1), (None, 0)])
def test_without_processes_the_lane_recalls_in_the_calling_thread_and_none_turns_it_off(
        tmp_path, monkeypatch, workers, groups):
    space, target = tmp_path / "space", tmp_path / "target"
    target.mkdir()
    files = tree(space, 10)
    before = manifest(space)
    stubbed(space, {"t": target}, "t", files)
    made = lane.LanePool(0)
    monkeypatch.setattr(actions, "shared_pool", lambda workers: made)
    out = actions.recall(ctx(space, {"t": target}, lane_workers=workers), items(files))
    assert statuses(out) == {"processed": 10}
    assert made.completed == groups
    assert manifest(space) == before


def test_a_dead_worker_hands_its_recall_group_back(tmp_path, pool, monkeypatch):
    space, target = tmp_path / "space", tmp_path / "target"
    target.mkdir()
    files = tree(space, 40)
    before = manifest(space)
    stubbed(space, {"t": target}, "t", files)
    monkeypatch.setattr(lane, "run_recall_group", _recall_half_then_die)
    out = actions.recall(ctx(space, {"t": target}), items(files))
    assert pool.handed_back == 1
    assert set(statuses(out)) <= {"processed", "skipped"} and statuses(out)["processed"] >= 20, out
    assert manifest(space) == before
    assert all(read_record(f).state == HsmState.HYDRATED for f in files)


def _recall_half_then_die(group: lane.RecallGroup) -> list:
    """The worker recalls half its group for real, then is killed (SIGKILL) mid-group."""
    half = lane.RecallGroup(group.settings, group.rels[: len(group.rels) // 2])
    lane.run_recall_group(half)  # in the worker the module's own function: the patch is the parent's
    os.kill(os.getpid(), signal.SIGKILL)
    return []


# --- PosixFilesystem.recall_group: recall's steps, durability shared by the group -------------------

@pytest.fixture
def fs(tmp_path):
    (tmp_path / "space").mkdir()
    return PosixFilesystem([tmp_path / "space"], chunk_size=CHUNK)


def test_a_group_is_recalled_with_three_syncs_and_no_fsync_a_file(tmp_path, fs, monkeypatch):
    space, store = tmp_path / "space", MemoryStore("m")
    files = tree(space, 30)
    before = manifest(space)
    assert all(fs.migrate(f, store).status == "processed" for f in files)
    fsyncs, syncs = [], []
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))
    real_sync = fs.sync_roots
    monkeypatch.setattr(fs, "sync_roots", lambda: (syncs.append(1), real_sync()))
    results = fs.recall_group(files, store)
    assert [(r.status, r.message) for r in results] == [("processed", f"recalled {f.stat().st_size} bytes (verified)")
                                                        for f in files]
    assert (len(fsyncs), len(syncs)) == (0, 3)  # pending, bytes, hydrated: each durable for all at once
    assert manifest(space) == before
    assert all(read_record(f).state == HsmState.HYDRATED and read_record(f).pending is None for f in files)


def test_a_group_answers_every_other_case_as_recall_does(tmp_path, fs):
    space, store = tmp_path / "space", MemoryStore("m")
    good = tree(space, 6)
    large = write_random(space / "large.bin", 3 * CHUNK, seed=7)
    written = write_random(space / "written.bin", 9000, seed=8)
    corrupt = write_random(space / "corrupt.bin", 7000, seed=9)
    resident = write_random(space / "resident.bin", 100, seed=10)
    before = manifest(space)
    for f in [*good, large, written, corrupt]:
        assert fs.migrate(f, store).status == "processed"
    with open(written, "r+b") as fh:
        fh.write(b"user data")
    store.corrupt(read_record(corrupt).key, bytes(7000))
    missing = space / "missing.bin"

    results = fs.recall_group([*good, large, written, corrupt, resident, missing], store)
    status = {Path(r.path).name: (r.status, r.message) for r in results}
    assert all(status[f.name][0] == "processed" for f in [*good, large])
    assert status["written.bin"] == ("failed", "the stub was written to after migration; not overwriting it")
    assert status["corrupt.bin"][0] == "failed" and "verification failed" in status["corrupt.bin"][1]
    assert status["resident.bin"] == ("skipped", "already resident (not managed)")
    assert status["missing.bin"] == ("skipped", "missing")
    after = manifest(space)
    for f in [*good, large, resident]:
        assert after[str(f.relative_to(space))] == before[str(f.relative_to(space))]
    record = read_record(corrupt)  # put back as the stub it was
    assert record.state == HsmState.MIGRATED and record.pending is None
    assert corrupt.stat().st_size == 7000 and corrupt.stat().st_blocks * 512 <= 8192
    assert written.read_bytes().startswith(b"user data")


def test_a_failed_sync_fails_the_group_and_a_rerun_recalls_it(tmp_path, fs, monkeypatch):
    space, store = tmp_path / "space", MemoryStore("m")
    files = tree(space, 8)
    before = manifest(space)
    for f in files:
        fs.migrate(f, store)
    calls = []

    def failing_second_sync():
        calls.append(1)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(fs, "sync_roots", failing_second_sync)
    results = fs.recall_group(files, store)
    assert {(r.status, r.message) for r in results} == {
        ("failed", "recalled bytes could not be made durable: Input/output error")}
    assert all(read_record(f).state == HsmState.MIGRATED for f in files)  # never claimed resident
    monkeypatch.undo()
    assert {r.status for r in fs.recall_group(files, store)} == {"processed"}
    assert manifest(space) == before


GROUP_RUNNER = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from agent.drivers import posix
from agent.drivers.fs import FolderStore

def main():
    space, target, step = sys.argv[2], sys.argv[3], sys.argv[4]
    count = [0]

    def failpoint(name):
        if name == step:
            count[0] += 1
            if count[0] == int(sys.argv[5]):
                os.kill(os.getpid(), signal.SIGKILL)

    posix._failpoint = failpoint
    fs = posix.PosixFilesystem([space], chunk_size=64 * 1024)
    paths = sorted(os.path.join(d, n) for d, _, names in os.walk(space) for n in names)
    fs.recall_group(paths, {"t": FolderStore(target)})

if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize(("step", "call"), [("recall:started", 1), ("recall:started", 5),
                                            ("recall-group:pending-synced", 1),
                                            ("recall-group:written-synced", 1), ("recall-group:recorded", 1)])
def test_sigkill_at_each_step_of_a_group_loses_nothing_and_a_rerun_finishes(tmp_path, step, call):
    space, target = tmp_path / "space", tmp_path / "target"
    target.mkdir()
    files = tree(space, 12)
    before = manifest(space)
    digests = {f: before[str(f.relative_to(space))][1] for f in files}
    stubbed(space, {"t": target}, "t", files)
    script = tmp_path / "runner.py"
    script.write_text(GROUP_RUNNER)
    proc = subprocess.run([sys.executable, str(script), str(ROOT), str(space), str(target), step, str(call)],
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    for f in files:  # never a file marked resident without its whole bytes
        record = read_record(f)
        assert record is not None
        if record.state == HsmState.HYDRATED:
            assert sha256_file(f) == digests[f]
        else:
            assert record.state == HsmState.MIGRATED
    results = PosixFilesystem([space], chunk_size=CHUNK).recall_group(files, {"t": FolderStore(target)})
    assert {r.status for r in results} <= {"processed", "skipped"}, results
    assert manifest(space) == before
    assert all(read_record(f).state == HsmState.HYDRATED and read_record(f).pending is None for f in files)


def test_the_same_file_twice_in_a_group_is_recalled_once_and_not_busy(tmp_path, fs):
    space, store = tmp_path / "space", MemoryStore("m")
    path = write_random(space / "f.bin", 5000, seed=3)
    os.link(path, space / "link.bin")
    data = path.read_bytes()
    assert fs.migrate(path, store).status == "processed"
    results = fs.recall_group([path, space / "link.bin", path], store)
    assert [(r.status, r.message) for r in results] == [
        ("processed", "recalled 5000 bytes (verified)"),
        ("skipped", "already resident (hydrated)"), ("skipped", "already resident (hydrated)")]
    assert path.read_bytes() == data


def test_a_file_another_operation_holds_is_reported_busy(tmp_path, fs):
    space, store = tmp_path / "space", MemoryStore("m")
    files = tree(space, 3)
    for f in files:
        fs.migrate(f, store)
    with open(files[1], "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        results = fs.recall_group(files, store)
    assert [r.status for r in results] == ["processed", "failed", "processed"]
    assert results[1].message == "busy: another HSM operation holds this file"
    assert read_record(files[1]).state == HsmState.MIGRATED
