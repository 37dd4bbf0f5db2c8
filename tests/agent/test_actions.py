"""The data tasks as batch functions (``agent.actions``): one outcome per path in order, one bad
path never failing the batch, abort_missing, idempotence, concurrency of small files, and each
action's options, on real files against the in-memory store."""

from __future__ import annotations

import fcntl
import io
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from agent import actions
from agent.actions import ActionContext, BatchProgress
from agent.drivers.base import PermanentError, TransientError
from agent.drivers.memory import MemoryStore
from agent.hsm.metadata import parse_metadata
from agent.hsm.state import HsmState, read_record
from agent.transfer import RetryPolicy
from tests.agent.hsm_fixtures import DirStore, manifest, sha256_file, write_file, write_random

pytestmark = pytest.mark.smoke
CHUNK = 64 * 1024
MTIME = 1_600_000_000_123_456_789


def state(path):
    rec = read_record(path)
    return rec.state if rec else HsmState.UNMANAGED


def statuses(outcomes):
    return [o["status"] for o in outcomes]


def items(*paths):
    return [{"path": str(p)} for p in paths]


@pytest.fixture
def store():
    return MemoryStore("t")


def context(roots, stores, **options):
    """A context whose targets are the given stores by name (a store, or {name: store})."""
    if not isinstance(stores, dict):
        stores = {"t": stores}
    options.setdefault("retry", RetryPolicy(attempts=3, sleep=lambda s: None))
    options.setdefault("chunk_size", CHUNK)
    return ActionContext([str(r) for r in roots], lambda name: stores[name], **options)


@pytest.fixture
def ctx(space, store):
    return context([space], store, concurrency=4)


def data_file(space, name="dir/file.bin", size=3 * CHUNK + 5, mode=0o640):
    path = write_random(space / name, size, seed=sum(name.encode()))
    os.chmod(path, mode)
    os.utime(path, ns=(MTIME - 7, MTIME))
    return path


def snapshot(space, store):
    """Everything a task could change: the tree's bytes and metadata, HSM records, the objects."""
    records = {}
    for dirpath, _, names in os.walk(space):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                rec = read_record(path)
                records[str(path.relative_to(space))] = rec and (rec.state, rec.key, rec.sha256, rec.pending)
    objects = {key: (data, info.metadata) for key, (data, info) in store._objects.items()}
    return manifest(space), records, objects


# --- one outcome per path, in order; one bad path never fails the batch ---------------------------

def test_a_mixed_batch_gets_one_outcome_per_path_in_order(ctx, space, store, tmp_path):
    good = [data_file(space, f"good/{i}.bin", size=100 + i) for i in range(5)]
    big = data_file(space, "good/big.bin", size=10 * CHUNK)
    os.link(good[0], space / "good" / "link-to-0.bin")
    os.symlink("0.bin", space / "good" / "symlink")
    outside = write_file(tmp_path / "outside.bin", b"not ours")
    os.symlink(outside, space / "escape")
    busy = data_file(space, "busy.bin")
    batch = [
        {"path": str(good[0])}, {"path": str(space / "good")}, {"path": str(space / "nope.bin")},
        {"path": str(outside)}, {"path": f"{space}/good/../busy.bin"}, {"path": "relative.bin"}, {"nopath": 1},
        {"path": str(space / "good" / "link-to-0.bin")}, {"path": str(space / "good" / "symlink")},
        {"path": str(space / "escape")}, {"path": str(busy)}, {"path": str(big), "size": 1, "state": "x"},
        *items(*good[1:]),
    ]
    with open(busy, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        out = actions.migrate(ctx, batch, target="t")

    assert [o["path"] for o in out] == [item.get("path", "") for item in batch]
    assert statuses(out) == [
        "processed", "skipped", "failed", "failed", "failed", "failed", "failed", "skipped", "skipped", "failed",
        "failed", "processed", "processed", "processed", "processed", "processed"]
    messages = [o.get("message", "") for o in out]
    assert messages[1] == "directory: not migrated"
    assert messages[2] == "missing: no such file or directory"
    assert messages[3] == "refused: outside the space roots"
    assert messages[4] == "refused: '..' is not allowed in paths"
    assert messages[5] == "refused: path must be absolute"
    assert messages[6].startswith("bad path item")
    assert messages[7] == "already migrated" and out[7]["key"] == "good/0.bin"  # same inode, after the first
    assert messages[9].startswith("refused")
    assert messages[10].startswith("busy")
    assert out[11]["size"] == 10 * CHUNK  # the file's own size, not the item's hint
    for path in [*good, big]:
        assert state(path) == HsmState.MIGRATED
    assert state(busy) == HsmState.UNMANAGED and outside.read_bytes() == b"not ours"


class PickyStore(MemoryStore):
    """Refuses (permanently) or crashes on uploads to chosen keys."""

    def put(self, key, stream, **kwargs):
        if "refused" in key:
            raise PermanentError("quota exceeded", key=key)
        if "crash" in key:
            raise RuntimeError("driver bug")
        return super().put(key, stream, **kwargs)


def test_store_errors_and_unexpected_exceptions_fail_only_their_path(space):
    store = PickyStore("t")
    paths = [data_file(space, name) for name in ("a.bin", "refused.bin", "b.bin", "crash.bin", "c.bin")]
    out = actions.migrate(context([space], store, concurrency=3), items(*paths), target="t")
    assert statuses(out) == ["processed", "failed", "processed", "failed", "processed"]
    assert out[1]["message"] == "PermanentError: quota exceeded" and out[1]["key"] == "refused.bin"
    assert out[3]["message"] == "internal error: RuntimeError: driver bug"
    assert [state(p) for p in paths] == [HsmState.MIGRATED, HsmState.UNMANAGED, HsmState.MIGRATED,
                                         HsmState.UNMANAGED, HsmState.MIGRATED]


def test_transient_store_errors_are_retried_and_permanent_ones_are_not(space, store):
    path = data_file(space)
    store.fail_next(TransientError("503 slow down"))
    store.fail_next(TransientError("503 slow down"))
    assert statuses(actions.migrate(context([space], store), items(path), target="t")) == ["processed"]

    other = data_file(space, "other.bin")
    store.fail_next(TransientError("503"))
    store.fail_next(TransientError("503"))
    once = context([space], store, retry=RetryPolicy(attempts=2, sleep=lambda s: None))
    out = actions.migrate(once, items(other), target="t")
    assert statuses(out) == ["failed"] and out[0]["message"].startswith("TransientError")
    assert state(other) == HsmState.UNMANAGED


def test_an_unknown_target_fails_the_whole_batch_before_any_path_is_touched(ctx, space):
    path = data_file(space)
    with pytest.raises(KeyError):
        actions.migrate(ctx, items(path), target="nowhere")
    assert state(path) == HsmState.UNMANAGED


@pytest.mark.parametrize("call", [
    lambda ctx: actions.migrate(ctx, [], target=""),
    lambda ctx: actions.migrate(ctx, [], target="t", stub_size=-1),
    lambda ctx: actions.migrate(ctx, [], target="t", stub_size="10"),
    lambda ctx: actions.migrate(ctx, [], target="t", premigrate="yes"),
    lambda ctx: actions.recall(ctx, [], default_uid=True),
    lambda ctx: actions.list(ctx, [], max_items=0),
    lambda ctx: actions.move(ctx, [], destination=""),
])
def test_options_of_the_wrong_type_fail_the_whole_batch(ctx, call):
    with pytest.raises(ValueError):
        call(ctx)


def test_an_empty_batch_is_an_empty_answer(ctx):
    assert actions.migrate(ctx, [], target="t") == []
    assert actions.recall(ctx, []) == []


# --- abort_missing ---------------------------------------------------------------------------------

def test_missing_paths_fail_or_with_abort_missing_end_aborted_while_the_rest_goes_on(ctx, space):
    first, last = data_file(space, "a.bin"), data_file(space, "z.bin")
    batch = items(first, space / "gone.bin", space / "no-dir" / "x.bin", last)
    out = actions.migrate(ctx, batch, target="t", premigrate=True)
    assert statuses(out) == ["processed", "failed", "failed", "processed"]

    out = actions.migrate(ctx, batch, target="t", abort_missing=True)
    assert statuses(out) == ["processed", "aborted", "aborted", "processed"]
    assert out[1]["message"] == "missing: aborted (abort_missing)"
    assert state(first) == state(last) == HsmState.MIGRATED
    assert statuses(actions.recall(ctx, batch, abort_missing=True)) == ["processed", "aborted", "aborted",
                                                                        "processed"]
    assert statuses(actions.delete(ctx, batch, abort_missing=True)) == ["processed", "aborted", "aborted",
                                                                        "processed"]


def test_a_path_removed_while_the_batch_runs_counts_as_missing(space, store):
    paths = [data_file(space, f"{i}.bin", size=100) for i in range(3)]

    def remove_the_last(progress: BatchProgress) -> None:  # once the first file's bytes have moved
        if progress.bytes_done >= 100 and paths[2].exists():
            paths[2].unlink()

    ctx = context([space], store, concurrency=1, progress=remove_the_last, progress_interval=0)
    out = actions.migrate(ctx, items(*paths), target="t", abort_missing=True)
    assert statuses(out) == ["processed", "processed", "aborted"]
    ctx = context([space], store, concurrency=1)
    assert statuses(actions.recall(ctx, items(*paths))) == ["processed", "processed", "failed"]


# --- twice equals once -------------------------------------------------------------------------------

def _tree(space):
    files = [data_file(space, f"t/{i}.bin", size=50 * i + 1) for i in range(6)]
    files.append(data_file(space, "t/big.bin", size=5 * CHUNK + 1))
    os.link(files[0], space / "t" / "hard.bin")
    os.symlink("0.bin", space / "t" / "sym")
    return [*files, space / "t" / "hard.bin", space / "t" / "sym", space / "t" / "missing"]


def test_every_action_run_twice_leaves_the_same_state_as_once(space, store, tmp_path):
    (tmp_path / "copy").mkdir()
    ctx = context([space, tmp_path / "copy"], store, concurrency=4)
    batch = items(*_tree(space))

    def twice(action, batch, **options):
        first = action(ctx, batch, **options)
        once = snapshot(space, store), snapshot(tmp_path / "copy", store)
        second = action(ctx, batch, **options)
        assert (snapshot(space, store), snapshot(tmp_path / "copy", store)) == once, action.__name__
        for a, b in zip(first, second, strict=True):
            assert b["status"] == (a["status"] if a["status"] != "processed" else "skipped"), (a, b)
        return first

    twice(actions.migrate, batch, target="t", premigrate=True)
    twice(actions.migrate, batch, target="t")
    twice(actions.recall, batch)
    copies = [{"path": str(tmp_path / "copy" / f"{i}.bin"), "key": f"t/{i}.bin"} for i in range(6)]
    twice(actions.reverse_stub, copies, target="t", hydrate=True)
    twice(actions.delete, batch, target="t")
    twice(actions.move, batch[:3], destination=str(space / "moved"))
    assert statuses(actions.stat(ctx, batch[3:5] + copies[:1])) == ["processed"] * 3


# --- concurrency ----------------------------------------------------------------------------------------

class ConcurrencyProbe(MemoryStore):
    """Records how many uploads run at once, and on which threads large and small files go up."""

    def __init__(self, name="t"):
        super().__init__(name)
        self.active = self.peak = 0
        self.threads: dict[str, str] = {}
        self._probe = threading.Lock()

    def put(self, key, stream, **kwargs):
        with self._probe:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads[key] = threading.current_thread().name
        try:
            time.sleep(0.005)  # long enough for uploads to overlap if they can
            return super().put(key, stream, **kwargs)
        finally:
            with self._probe:
                self.active -= 1


def test_small_files_go_up_concurrently_and_large_ones_stream_on_the_calling_thread(space):
    store = ConcurrencyProbe()
    small = [write_random(space / "many" / f"{i:03}.bin", 1 + i * 97, seed=i) for i in range(120)]
    large = data_file(space, "large.bin", size=8 * CHUNK + 3)
    digests = {p: sha256_file(p) for p in [*small, large]}
    ctx = context([space], store, concurrency=6)
    out = actions.migrate(ctx, items(*small[:60], large, *small[60:]), target="t")

    assert statuses(out) == ["processed"] * 121
    assert [o["path"] for o in out] == [str(p) for p in [*small[:60], large, *small[60:]]]
    assert 2 <= store.peak <= 6 + 1  # the pool, plus the large file on the calling thread
    assert store.threads["large.bin"] == threading.current_thread().name
    assert {store.threads[f"many/{i:03}.bin"] for i in range(120)} <= {f"agent-migrate_{i}" for i in range(6)}
    out = actions.recall(ctx, items(*small, large))
    assert statuses(out) == ["processed"] * 121
    assert all(sha256_file(p) == digest for p, digest in digests.items())


def test_concurrency_one_runs_everything_in_order_on_the_calling_thread(space):
    store = ConcurrencyProbe()
    paths = [data_file(space, f"{i}.bin", size=10) for i in range(10)]
    out = actions.migrate(context([space], store, concurrency=1), items(*paths), target="t")
    assert statuses(out) == ["processed"] * 10 and store.peak == 1
    assert set(store.threads.values()) == {threading.current_thread().name}


class NotThreadSafeStore(MemoryStore):
    """Each instance must be used by one thread only (like the GCS driver); all share one bucket."""

    thread_safe = False
    bucket: dict = {}
    bucket_lock = threading.Lock()

    def __init__(self, name="t"):
        super().__init__(name)
        self._objects = self.bucket
        self._lock = self.bucket_lock
        self.used_by: set[str] = set()
        self.closed = False

    def _maybe_fail(self):
        self.used_by.add(threading.current_thread().name)
        assert not self.closed
        super()._maybe_fail()

    def close(self):
        self.closed = True


def test_a_store_that_is_not_thread_safe_gets_one_instance_per_thread(space):
    NotThreadSafeStore.bucket = {}
    opened: list[NotThreadSafeStore] = []

    def open_target(name):
        opened.append(NotThreadSafeStore(name))
        return opened[-1]

    paths = [data_file(space, f"{i}.bin", size=100 + i) for i in range(40)]
    ctx = ActionContext([str(space)], open_target, concurrency=4, chunk_size=CHUNK)
    assert statuses(actions.migrate(ctx, items(*paths), target="t")) == ["processed"] * 40
    assert statuses(actions.recall(ctx, items(*paths))) == ["processed"] * 40
    assert len(opened) >= 3
    assert all(len(store.used_by) <= 1 and store.closed for store in opened)


def test_thread_safe_stores_are_shared_and_closed_once_the_batch_ends(space):
    opened = []

    class Closing(MemoryStore):
        closed = 0

        def close(self):
            self.closed += 1

    shared = Closing("t")

    def open_target(name):
        opened.append(name)
        return shared

    paths = [data_file(space, f"{i}.bin", size=10) for i in range(30)]
    ctx = ActionContext([str(space)], open_target, concurrency=4, chunk_size=CHUNK)
    actions.migrate(ctx, items(*paths), target="t")
    assert opened == ["t"] and shared.closed == 1  # opened once, before the pool starts


# --- cancel and progress ------------------------------------------------------------------------------

def test_cancel_stops_the_batch_between_paths_and_mid_transfer(space, store):
    paths = [data_file(space, f"{i}.bin", size=100) for i in range(8)]
    big = data_file(space, "big.bin", size=40 * CHUNK)
    digest = sha256_file(big)
    cancel = threading.Event()

    def cancel_mid_upload(progress: BatchProgress) -> None:
        if progress.paths_done == 4 and progress.bytes_done > 400 + 2 * CHUNK:
            cancel.set()

    ctx = context([space], store, concurrency=1, should_cancel=cancel.is_set, progress=cancel_mid_upload,
                  progress_interval=0)
    out = actions.migrate(ctx, items(*paths[:4], big, *paths[4:]), target="t")
    assert statuses(out[:4]) == ["processed"] * 4
    assert out[4]["status"] == "aborted" and out[4]["message"] == "cancelled"  # stopped between chunks
    assert statuses(out[5:]) == ["aborted"] * 4 and out[5]["message"] == "not attempted: cancelled"
    assert state(big) == HsmState.UNMANAGED and sha256_file(big) == digest
    assert not store.exists("big.bin")


def test_progress_counts_paths_and_bytes_up_to_the_batch_totals(space, store):
    paths = [data_file(space, f"{i}.bin", size=1000) for i in range(20)]
    paths.append(data_file(space, "big.bin", size=20 * CHUNK))
    seen: list[BatchProgress] = []
    ctx = context([space], store, concurrency=4, progress=seen.append, progress_interval=0)
    actions.migrate(ctx, items(*paths, space / "missing"), target="t")
    total = 20 * 1000 + 20 * CHUNK
    assert seen[-1] == BatchProgress(paths_done=22, paths_total=22, bytes_done=total, bytes_total=total)
    assert [s.paths_done for s in seen] == sorted(s.paths_done for s in seen)
    assert any(0 < s.bytes_done < total and s.paths_done < 21 for s in seen)  # mid-transfer reports

    def broken(progress):
        raise RuntimeError("broker down")

    ctx = context([space], store, progress=broken, progress_interval=0)
    assert statuses(actions.recall(ctx, items(*paths))) == ["processed"] * 21


# --- migrate options ---------------------------------------------------------------------------------

def test_premigrate_then_migrate_releases_without_a_second_upload(ctx, space, store):
    path = data_file(space)
    digest = sha256_file(path)
    out = actions.migrate(ctx, items(path), target="t", premigrate=True)
    assert out[0]["message"] == "premigrated (remote copy verified)"
    assert state(path) == HsmState.PREMIGRATED and sha256_file(path) == digest
    out = actions.migrate(ctx, items(path), target="t", stub_size=CHUNK)
    assert out[0]["message"] == "released (remote copy verified)"
    assert state(path) == HsmState.MIGRATED and read_record(path).stub_size == CHUNK
    assert list(store._objects) == ["dir/file.bin"]


def test_an_occupied_key_gets_a_sibling_unless_overwrite_and_verify_content_re_reads(ctx, space, store):
    store.put("dir/file.bin", io.BytesIO(b"someone else's only copy"))
    path = data_file(space)
    out = actions.migrate(ctx, items(path), target="t", premigrate=True, verify_content=True)
    assert out[0]["key"].startswith("dir/file.bin~")
    assert store.raw("dir/file.bin") == b"someone else's only copy"
    other = data_file(space, "dir/other.bin")
    store.put("dir/other.bin", io.BytesIO(b"stale"))
    out = actions.migrate(ctx, items(other), target="t", overwrite=True)
    assert out[0]["key"] == "dir/other.bin"
    assert parse_metadata(store.head("dir/other.bin").metadata).sha256 == read_record(other).sha256


@pytest.mark.parametrize("skip", [False, True])
def test_a_file_modified_during_migrate_is_never_released(space, store, skip):
    path = data_file(space, size=20 * CHUNK)

    def touch(progress: BatchProgress) -> None:
        if 0 < progress.bytes_done < 20 * CHUNK and path.stat().st_size == 20 * CHUNK:
            with open(path, "ab") as fh:
                fh.write(b"more")

    ctx = context([space], store, progress=touch, progress_interval=0)
    out = actions.migrate(ctx, items(path), target="t", skip_modified_during_migrate=skip)
    assert out[0]["status"] == ("skipped" if skip else "failed")
    assert "modified during migrate" in out[0]["message"]
    assert state(path) == HsmState.UNMANAGED and path.stat().st_size == 20 * CHUNK + 4


# --- recall options ----------------------------------------------------------------------------------

def test_recall_options_verify_times_owner_target_and_delete_remote(space, store):
    ctx = context([space], {"t": store, "replica": (replica := MemoryStore("replica"))})
    a, b, c, d = (data_file(space, f"{n}.bin") for n in "abcd")
    os.chown(b, 4321, 8765)  # no such user or group here
    digests = {p: sha256_file(p) for p in (a, b, c, d)}
    actions.migrate(ctx, items(a, b, c, d), target="t")
    for key, (data, info) in store._objects.items():
        replica._objects[key] = (data, info)

    out = actions.recall(ctx, items(a), restore_times=False)
    assert out[0]["message"] == f"recalled {3 * CHUNK + 5} bytes (verified)"
    assert a.stat().st_mtime_ns != MTIME and state(a) == HsmState.HYDRATED
    out = actions.recall(ctx, items(b), default_uid=0, default_gid=0)
    assert (b.stat().st_uid, b.stat().st_gid, b.stat().st_mtime_ns) == (0, 0, MTIME)
    store.corrupt("c.bin", os.urandom(3 * CHUNK + 5))
    out = actions.recall(ctx, items(c))
    assert out[0]["status"] == "failed" and "checksum" in out[0]["message"] and state(c) == HsmState.MIGRATED
    out = actions.recall(ctx, items(c), target="replica")  # another endpoint with the same objects
    assert out[0]["status"] == "processed" and sha256_file(c) == digests[c]
    out = actions.recall(ctx, items(d), delete_remote=True, verify=False)
    assert "remote copy deleted" in out[0]["message"] and not store.exists("d.bin")
    assert state(d) == HsmState.UNMANAGED and sha256_file(d) == digests[d]


def test_recall_of_a_file_whose_target_is_not_configured_fails_that_path_only(space, store):
    a, b = data_file(space, "a.bin"), data_file(space, "b.bin")
    stores = {"t": store, "gone": MemoryStore("gone")}
    ctx = context([space], stores)
    actions.migrate(ctx, items(a), target="t")
    actions.migrate(ctx, items(b), target="gone")
    del stores["gone"]
    out = actions.recall(ctx, items(a, b))
    assert statuses(out) == ["processed", "failed"]
    assert out[1]["message"] == "no store configured for target 'gone'"


# --- reverse stub ----------------------------------------------------------------------------------

def test_reverse_stub_uses_the_items_key_or_derives_it_and_can_hydrate(space, store, tmp_path):
    ctx = context([space], store, key_prefix="site-a/")
    one, two = data_file(space, "x/one.bin"), data_file(space, "x/two.bin", size=10 * CHUNK)
    os.chown(two, 1234, 5678)
    before = manifest(space)
    migrated = actions.migrate(ctx, items(one, two), target="t")
    assert [o["key"] for o in migrated] == ["site-a/x/one.bin", "site-a/x/two.bin"]

    other = tmp_path / "elsewhere"
    other.mkdir()
    ctx2 = context([other], store, key_prefix="site-a/")
    batch = [
        {"path": str(other / "renamed.bin"), "key": migrated[0]["key"]},  # the previous step's key
        {"path": str(other / "x" / "two.bin")},  # derived: the same relative path and prefix
        {"path": str(other / "absent.bin")},  # derived key names no object
        {"path": str(other / "bad.bin"), "key": 7},
    ]
    out = actions.reverse_stub(ctx2, batch, target="t")
    assert statuses(out) == ["processed", "processed", "failed", "failed"]
    assert out[2]["message"].startswith("NotFound") and out[3]["message"].startswith("bad object key")
    assert state(other / "renamed.bin") == HsmState.MIGRATED
    assert (other / "x" / "two.bin").stat().st_blocks * 512 <= 8192

    out = actions.reverse_stub(ctx2, batch[:2], target="t", hydrate=True)
    assert statuses(out) == ["processed", "processed"] and "recalled" in out[1]["message"]
    restored = manifest(other)
    assert restored["renamed.bin"] == before["x/one.bin"] and restored["x/two.bin"] == before["x/two.bin"]
    write_file(other / "taken.bin", b"mine")
    out = actions.reverse_stub(ctx2, [{"path": str(other / "taken.bin"), "key": "site-a/x/one.bin"}], target="t")
    assert out[0]["status"] == "failed" and (other / "taken.bin").read_bytes() == b"mine"


# --- delete (remote copy) ----------------------------------------------------------------------------

def test_delete_removes_remote_copies_of_resident_files_only(space, store):
    ctx = context([space], {"t": store, "u": (other := MemoryStore("u"))})
    resident, stub, elsewhere, plain = (data_file(space, f"{n}.bin") for n in ("resident", "stub", "else", "plain"))
    actions.migrate(ctx, items(resident), target="t", premigrate=True)
    actions.migrate(ctx, items(stub), target="t")
    actions.migrate(ctx, items(elsewhere), target="u", premigrate=True)
    out = actions.delete(ctx, items(resident, stub, elsewhere, plain), target="t")
    assert statuses(out) == ["processed", "failed", "skipped", "skipped"]
    assert "only copy" in out[1]["message"] and "on target 'u'" in out[2]["message"]
    assert state(resident) == HsmState.UNMANAGED and not store.exists("resident.bin")
    assert store.exists("stub.bin") and other.exists("else.bin")
    assert statuses(actions.delete(ctx, items(elsewhere))) == ["processed"]  # any target: the record's


# --- move ---------------------------------------------------------------------------------------------

def test_move_renames_within_the_space_keeping_hsm_state(space, store, tmp_path):
    ctx = context([space], store)
    stub, plain = data_file(space, "src/sub/stub.bin"), data_file(space, "src/plain.bin")
    digest = sha256_file(stub)
    actions.migrate(ctx, items(stub), target="t")
    out = actions.move(ctx, items(stub, plain), destination=str(space / "dst"), source_root=str(space / "src"))
    assert statuses(out) == ["processed", "processed"]
    assert out[0]["destination"] == str(space / "dst" / "sub" / "stub.bin") and out[0]["key"] == "src/sub/stub.bin"
    moved = space / "dst" / "sub" / "stub.bin"
    assert not stub.exists() and state(moved) == HsmState.MIGRATED
    assert statuses(actions.recall(ctx, items(moved))) == ["processed"] and sha256_file(moved) == digest

    # a whole directory, by the item's own destination; its files keep their records
    out = actions.move(ctx, [{"path": str(space / "dst"), "destination": str(space / "renamed")}])
    assert out[0]["status"] == "processed" and state(space / "renamed" / "sub" / "stub.bin") == HsmState.HYDRATED


def test_move_never_replaces_unless_asked_and_never_leaves_the_space(space, store, tmp_path):
    (tmp_path / "other").mkdir()
    ctx = context([space, tmp_path / "other"], store)
    a, b = write_file(space / "a.txt", b"a"), write_file(space / "b.txt", b"b")
    (space / "dir").mkdir()
    out = actions.move(ctx, [
        {"path": str(a), "destination": str(b)},
        {"path": str(a), "destination": str(tmp_path / "other" / "a.txt")},
        {"path": str(a), "destination": str(tmp_path / "outside.txt")},
        {"path": str(a), "destination": str(space / "dir")},
        {"path": str(space), "destination": str(space / "dir" / "x")},
        {"path": str(space / "dir"), "destination": str(space / "dir" / "inner")},
        {"path": str(a)},
    ])
    assert statuses(out) == ["failed"] * 7
    assert [o["message"] for o in out] == [
        "the destination exists; not replaced (overwrite not set)",
        "the destination is in another space; move renames within one",
        "refused: outside the space roots",
        "the destination exists; not replaced (overwrite not set)",
        "refused: a space root is never moved or replaced",
        "a directory cannot move into itself",
        "no destination: give the task's destination or the item's own",
    ]
    assert a.read_bytes() == b"a" and b.read_bytes() == b"b"
    out = actions.move(ctx, [{"path": str(a), "destination": str(b)}], overwrite=True)
    assert out[0]["status"] == "processed" and b.read_bytes() == b"a" and not a.exists()
    out = actions.move(ctx, [{"path": str(b), "destination": str(space / "dir")}], overwrite=True)
    assert out[0]["status"] == "failed" and "directory is never replaced" in out[0]["message"]


# --- stat and list ---------------------------------------------------------------------------------------

def test_stat_describes_files_stubs_directories_and_links(space, store):
    ctx = context([space], store)
    stub, plain = data_file(space, "d/stub.bin"), data_file(space, "d/plain.bin", size=10)
    os.symlink("plain.bin", space / "d" / "link")
    actions.migrate(ctx, items(stub), target="t")
    out = actions.stat(ctx, items(stub, plain, space / "d", space / "d" / "link", space / "none", "/etc"))
    assert statuses(out) == ["processed"] * 4 + ["failed", "failed"]
    entries = [o["entry"] for o in out[:4]]
    assert [(e["name"], e["type"], e["state"]) for e in entries] == [
        ("stub.bin", "file", "migrated"), ("plain.bin", "file", "unmanaged"), ("d", "directory", "unmanaged"),
        ("link", "symlink", "unmanaged")]
    assert (entries[0]["size"], entries[0]["mode"], entries[0]["mtime_ns"]) == (3 * CHUNK + 5, 0o640, MTIME)
    assert entries[0]["allocated"] <= 8192 and (entries[0]["target"], entries[0]["key"]) == ("t", "d/stub.bin")
    assert entries[3]["link"] == "plain.bin"


def test_list_pages_a_directory_by_name_with_a_glob(space, store, tmp_path):
    ctx = context([space], store)
    for name in ("b.txt", "a.txt", "c.bin", "d.txt", "e.txt"):
        write_file(space / "dir" / name, name.encode())
    (space / "dir" / "sub").mkdir()
    os.symlink(tmp_path, space / "dir" / "out")  # shown as a link, never followed
    out = actions.list(ctx, items(space / "dir"), max_items=3)
    assert [e["name"] for e in out[0]["entries"]] == ["a.txt", "b.txt", "c.bin"]
    assert out[0]["next_marker"] == "c.bin"
    out = actions.list(ctx, items(space / "dir"), max_items=3, marker="c.bin")
    assert [e["name"] for e in out[0]["entries"]] == ["d.txt", "e.txt", "out"]
    assert out[0]["entries"][2]["type"] == "symlink" and out[0]["next_marker"] == "out"
    out = actions.list(ctx, items(space / "dir"), max_items=3, marker="out")
    assert [e["name"] for e in out[0]["entries"]] == ["sub"] and "next_marker" not in out[0]
    out = actions.list(ctx, items(space / "dir"), pattern="*.txt")
    assert [e["path"] for e in out[0]["entries"]] == [str(space / "dir" / n) for n in ("a.txt", "b.txt", "d.txt",
                                                                                         "e.txt")]
    out = actions.list(ctx, items(space / "dir" / "a.txt", space / "dir" / "out", space / "nope", space))
    assert statuses(out) == ["failed", "failed", "failed", "processed"]
    assert out[0]["message"] == "not a directory" and out[1]["message"].startswith("refused")
    assert [e["name"] for e in out[3]["entries"]] == ["dir"]


def test_every_action_refuses_paths_outside_the_space(space, store, tmp_path):
    ctx = context([space], store)
    outside = write_file(tmp_path / "outside" / "victim.bin", b"must not change")
    os.symlink(tmp_path / "outside", space / "escape")
    batch = items(outside, space / "escape" / "victim.bin", f"{space}/../outside/victim.bin")
    calls = {
        "migrate": lambda: actions.migrate(ctx, batch, target="t"),
        "recall": lambda: actions.recall(ctx, batch),
        "reverse_stub": lambda: actions.reverse_stub(ctx, [{**i, "key": "k"} for i in batch], target="t"),
        "delete": lambda: actions.delete(ctx, batch, target="t"),
        "move": lambda: actions.move(ctx, batch, destination=str(space)),
        "stat": lambda: actions.stat(ctx, batch),
        "list": lambda: actions.list(ctx, batch),
    }
    for name, call in calls.items():
        out = call()
        assert all(o["status"] == "failed" and o["message"].startswith("refused") for o in out), (name, out)
    assert outside.read_bytes() == b"must not change" and os.listdir(space) == ["escape"]
    assert Counter(store._objects) == Counter()


class LockstepStore(MemoryStore):
    """``head`` waits until ``parties`` threads are in it, then lets them all go at once."""

    def __init__(self, name="t", parties=8):
        super().__init__(name)
        self.barrier = threading.Barrier(parties, timeout=10)

    def head(self, key):
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return super().head(key)


@pytest.fixture
def eager_thread_switches():
    """Switch threads as often as the interpreter can, so that races show up reliably."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_concurrent_reverse_stubs_into_new_directories_all_succeed(space, tmp_path, eager_thread_switches):
    # Threads released together all create the same missing parent directories: none may fail
    # with "File exists" (a bug found here, fixed in the POSIX driver's _open_dir).
    store = LockstepStore()
    store.barrier.abort()  # not during the migration
    ctx = context([space], store, concurrency=8)
    paths = [data_file(space, f"a/b/{i}.bin", size=10) for i in range(32)]
    migrated = actions.migrate(ctx, items(*paths), target="t", premigrate=True)
    for attempt in range(3):
        store.barrier = threading.Barrier(8, timeout=10)
        other = tmp_path / f"other{attempt}"
        other.mkdir()
        ctx2 = context([other], store, concurrency=8)
        batch = [{"path": str(other / "x" / "y" / f"{i}.bin"), "key": o["key"]} for i, o in enumerate(migrated)]
        out = actions.reverse_stub(ctx2, batch, target="t")
        assert [o for o in out if o["status"] != "processed"] == []


def test_large_files_stream_and_small_ones_are_bounded_by_the_pool(space, tmp_path):
    # DirStore streams to disk, so the memory traced is the agent's own: chunks in flight, never a file.
    big = write_random(space / "big.bin", 48 * 1024 * 1024)
    small = [write_random(space / "small" / f"{i}.bin", CHUNK, seed=i) for i in range(64)]
    digest = sha256_file(big)
    ctx = ActionContext([str(space)], lambda name: DirStore(tmp_path / "objects", name), concurrency=4,
                        chunk_size=1024 * 1024)
    tracemalloc.start()
    try:
        assert statuses(actions.migrate(ctx, items(big, *small), target="t")) == ["processed"] * 65
        assert statuses(actions.recall(ctx, items(big, *small))) == ["processed"] * 65
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 * 1024 * 1024, peak  # a few 1 MiB chunks and 4 small files at a time, not 48 MiB
    assert sha256_file(big) == digest
