"""The POSIX filesystem driver's HSM operations, browsing and path rules, on real files in a real
directory tree (ext4 with user xattrs) against the in-memory store."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from agent.drivers.base import AccessDenied, TransientError
from agent.drivers.memory import MemoryStore
from agent.drivers.posix import EntryKind, PathRefused, PosixFilesystem, ResultStatus, SpacePath
from agent.hsm.metadata import parse_metadata
from agent.hsm.state import HsmState, Pending, read_record
from agent.transfer import RetryPolicy
from tests.agent.hsm_fixtures import sha256_file, write_file, write_random

pytestmark = pytest.mark.smoke
CHUNK = 64 * 1024
MTIME = 1_600_000_000_123_456_789
P, F, A, S = ResultStatus.PROCESSED, ResultStatus.FAILED, ResultStatus.ABORTED, ResultStatus.SKIPPED


class CountingStore(MemoryStore):
    def __init__(self, name: str = "memory") -> None:
        super().__init__(name)
        self.puts = 0

    def put(self, key, stream, **kwargs):
        self.puts += 1
        return super().put(key, stream, **kwargs)


@pytest.fixture
def fs(space):
    return PosixFilesystem([space], chunk_size=CHUNK, retry=RetryPolicy(attempts=3, sleep=lambda s: None))


@pytest.fixture
def store():
    return CountingStore()


def data_file(space, name="dir/file.bin", size=3 * CHUNK + 5, mode=0o640):
    path = write_random(space / name, size, seed=hash(name) & 0xFFFF)
    os.chmod(path, mode)
    os.utime(path, ns=(MTIME - 7, MTIME))
    return path


def state(path):
    rec = read_record(path)
    return rec.state if rec else HsmState.UNMANAGED


# --- migrate ---------------------------------------------------------------------------------------

def test_migrate_stubs_the_file_keeping_size_mode_owner_and_times(fs, store, space):
    path = data_file(space)
    os.chown(path, 1234, 5678)
    digest = sha256_file(path)
    before = path.stat()  # after the read above, which may have moved atime
    result = fs.migrate(path, store)
    assert (result.status, result.key) == (P, "dir/file.bin"), result.message
    after = path.stat()
    assert state(path) == HsmState.MIGRATED
    assert (after.st_size, after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns, after.st_atime_ns) == (
        before.st_size, before.st_mode, 1234, 5678, MTIME, before.st_atime_ns)
    assert after.st_blocks * 512 <= 8192  # data released; at most the xattr block remains
    assert path.read_bytes() == b"\0" * before.st_size
    assert hashlib.sha256(store.raw("dir/file.bin")).hexdigest() == digest
    meta = parse_metadata(store.head("dir/file.bin").metadata)
    assert (meta.sha256, meta.size, meta.mode, meta.uid, meta.gid, meta.mtime_ns, meta.path) == (
        digest, before.st_size, 0o640, 1234, 5678, MTIME, "dir/file.bin")
    rec = read_record(path)
    assert (rec.sha256, rec.size, rec.inode, rec.target, rec.pending) == (digest, before.st_size, before.st_ino,
                                                                          "memory", None)


def test_stub_size_keeps_the_leading_bytes_resident(fs, store, space):
    path = data_file(space, size=40 * CHUNK)
    head = path.read_bytes()[:CHUNK]
    assert fs.migrate(path, store, stub_size=CHUNK).status == P
    assert path.read_bytes()[:CHUNK] == head
    assert path.stat().st_blocks * 512 <= CHUNK + 8192
    assert read_record(path).stub_size == CHUNK


def test_premigrate_keeps_the_content_and_a_later_migrate_releases_without_uploading(fs, store, space):
    path = data_file(space)
    digest = sha256_file(path)
    assert fs.migrate(path, store, premigrate=True).status == P
    assert state(path) == HsmState.PREMIGRATED and sha256_file(path) == digest
    assert fs.migrate(path, store, premigrate=True).status == S
    result = fs.migrate(path, store)
    assert (result.status, store.puts) == (P, 1), result.message
    assert state(path) == HsmState.MIGRATED


def test_migrating_a_migrated_file_is_a_skipped_no_op(fs, store, space):
    path = data_file(space)
    fs.migrate(path, store)
    stamp = path.stat()
    result = fs.migrate(path, store)
    assert (result.status, result.message, store.puts) == (S, "already migrated", 1)
    assert path.stat().st_ctime_ns == stamp.st_ctime_ns


def test_migrate_retries_transient_store_errors(fs, store, space):
    path = data_file(space)
    store.fail_next(TransientError("503"))
    store.fail_next(TransientError("503"))
    assert fs.migrate(path, store).status == P


def test_cancelled_migrate_is_aborted_and_leaves_the_file_resident(fs, store, space):
    path = data_file(space, size=20 * CHUNK)
    digest = sha256_file(path)
    calls = iter(range(1000))
    result = fs.migrate(path, store, should_cancel=lambda: next(calls) > 8)
    assert result.status == A
    assert state(path) == HsmState.UNMANAGED and sha256_file(path) == digest


def test_a_file_locked_by_another_operation_fails_fast_as_busy(fs, store, space):
    path = data_file(space)
    with open(path, "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        result = fs.migrate(path, store)
    assert (result.status, state(path)) == (F, HsmState.UNMANAGED)
    assert "busy" in result.message


def test_missing_paths_are_skipped_or_abort_the_batch(fs, store, space):
    present = data_file(space, "b.bin")
    assert fs.migrate(space / "nope", store).status == S
    results = fs.batch(lambda p: fs.migrate(p, store, abort_missing=True),
                       [str(space / "nope"), str(present)])
    assert [r.status for r in results] == [A, A]
    assert state(present) == HsmState.UNMANAGED


def test_a_cancelled_batch_stops_between_files(fs, store, space):
    paths = [str(data_file(space, f"{n}.bin", size=10)) for n in range(3)]
    done: list[str] = []

    def migrate(path):
        done.append(path)
        return fs.migrate(path, store)

    results = fs.batch(migrate, paths, should_cancel=lambda: len(done) >= 1)
    assert [r.status for r in results] == [P, A, A]
    assert [state(p) for p in paths] == [HsmState.MIGRATED, HsmState.UNMANAGED, HsmState.UNMANAGED]


def test_directories_fifos_and_symlinks_are_skipped(fs, store, space):
    (space / "d").mkdir()
    os.mkfifo(space / "fifo")
    data_file(space, "real.bin")
    os.symlink("real.bin", space / "link")
    for name in ("d", "fifo", "link"):
        result = fs.migrate(space / name, store)
        assert result.status == S, (name, result.message)
    assert "symlink" in fs.migrate(space / "link", store).message
    assert state(space / "real.bin") == HsmState.UNMANAGED


def test_hard_links_share_one_inode_so_it_is_migrated_once(fs, store, space):
    path = data_file(space, "a.bin")
    os.link(path, space / "b.bin")
    assert fs.migrate(path, store).status == P
    second = fs.migrate(space / "b.bin", store)
    assert (second.status, second.key, store.puts) == (S, "a.bin", 1)
    assert fs.recall(space / "b.bin", store).status == P
    assert fs.recall(path, store).status == S
    assert os.stat(path).st_ino == os.stat(space / "b.bin").st_ino


def test_migrating_to_another_target_uploads_again(fs, space):
    path = data_file(space)
    first, second = CountingStore("one"), CountingStore("two")
    assert fs.migrate(path, first, premigrate=True).status == P
    assert fs.migrate(path, second).status == P
    assert (second.puts, read_record(path).target) == (1, "two")


# --- keys ------------------------------------------------------------------------------------------

def test_keys_are_the_space_relative_path_with_an_optional_prefix(space, store):
    fs = PosixFilesystem([space], key_prefix="site1/projects/", chunk_size=CHUNK)
    path = data_file(space, "a b/naïve ☃.txt")
    assert fs.migrate(path, store).key == "site1/projects/a b/naïve ☃.txt"


def test_undecodable_names_get_percent_encoded_keys(fs, store, space):
    raw = os.fsdecode(b"caf\xe9.bin")
    write_file(space / raw, b"bytes")
    result = fs.migrate(space / raw, store)
    assert (result.status, result.key) == (P, "caf%E9.bin")
    assert parse_metadata(store.head(result.key).metadata).path == raw


def test_an_occupied_key_gets_a_unique_sibling_unless_overwrite(fs, store, space):
    path = data_file(space)
    store.put("dir/file.bin", io.BytesIO(b"someone else's object"))
    result = fs.migrate(path, store, premigrate=True)
    assert result.key.startswith("dir/file.bin~") and result.status == P
    assert store.raw("dir/file.bin") == b"someone else's object"
    other = data_file(space, "other.bin")
    store.put("other.bin", io.BytesIO(b"old"))
    forced = fs.migrate(other, store, overwrite=True)
    assert (forced.status, forced.key) == (P, "other.bin")
    assert store.raw("other.bin") != b"old"


def test_a_key_taken_between_choosing_and_uploading_moves_to_a_sibling(fs, space):
    class RacingStore(MemoryStore):
        raced = False

        def put(self, key, stream, **kwargs):
            if kwargs.get("if_absent") and not self.raced:
                self.raced = True
                super().put(key, io.BytesIO(b"the other agent's file"))
            return super().put(key, stream, **kwargs)

    store = RacingStore()
    result = fs.migrate(data_file(space), store)
    assert result.status == P and result.key.startswith("dir/file.bin~")
    assert store.raw("dir/file.bin") == b"the other agent's file"


def test_very_long_paths_get_keys_within_the_store_limit(fs, store, space):
    deep = "/".join(["d" * 200] * 6) + "/f.bin"
    result = fs.migrate(write_file(space / deep, b"deep"), store)
    assert result.status == P, result.message
    assert len(result.key.encode()) <= 1024 and result.key.startswith("d" * 200)
    assert parse_metadata(store.head(result.key).metadata).path is None  # too long for metadata


# --- recall ----------------------------------------------------------------------------------------

def test_recall_restores_bytes_in_place_and_marks_hydrated(fs, store, space):
    path = data_file(space)
    digest, ino = sha256_file(path), path.stat().st_ino
    fs.migrate(path, store)
    result = fs.recall(path, store)
    assert result.status == P, result.message
    assert sha256_file(path) == digest
    st = path.stat()
    assert (st.st_ino, st.st_mtime_ns, stat.S_IMODE(st.st_mode)) == (ino, MTIME, 0o640)
    assert state(path) == HsmState.HYDRATED


def test_recalling_a_resident_file_is_a_skipped_no_op(fs, store, space):
    path = data_file(space)
    assert fs.recall(path, store).status == S
    fs.migrate(path, store)
    fs.recall(path, store)
    again = fs.recall(path, store)
    assert (again.status, state(path)) == (S, HsmState.HYDRATED)


def test_a_hydrated_unchanged_file_is_released_again_without_upload(fs, store, space):
    path = data_file(space)
    fs.migrate(path, store)
    fs.recall(path, store)
    assert fs.migrate(path, store).status == P
    assert (state(path), store.puts) == (HsmState.MIGRATED, 1)


def test_a_hydrated_file_that_was_edited_is_uploaded_to_a_new_key(fs, store, space):
    path = data_file(space)
    fs.migrate(path, store)
    fs.recall(path, store)
    with open(path, "r+b") as fh:
        fh.write(b"edited")
    assert fs.stat(path).stale
    result = fs.migrate(path, store)
    assert result.status == P and result.key != "dir/file.bin"
    assert store.puts == 2 and store.exists("dir/file.bin")  # the old version is kept
    fs.recall(path, store)
    assert path.read_bytes().startswith(b"edited")


def test_recall_with_delete_remote_leaves_an_unmanaged_file(fs, store, space):
    path = data_file(space)
    digest = sha256_file(path)
    fs.migrate(path, store)
    result = fs.recall(path, store, delete_remote=True)
    assert result.status == P, result.message
    assert not store.exists("dir/file.bin")
    assert (state(path), sha256_file(path)) == (HsmState.UNMANAGED, digest)


def test_recall_refuses_to_overwrite_a_stub_that_was_written_to(fs, store, space):
    path = data_file(space)
    fs.migrate(path, store)
    with open(path, "r+b") as fh:
        fh.write(b"user data")
    result = fs.recall(path, store)
    assert result.status == F and "written to" in result.message
    assert path.read_bytes().startswith(b"user data")


def test_recall_without_restoring_times_keeps_the_record_consistent(fs, store, space):
    path = data_file(space)
    fs.migrate(path, store)
    assert fs.recall(path, store, restore_times=False).status == P
    assert path.stat().st_mtime_ns != MTIME
    assert not fs.stat(path).stale


def test_recall_gives_unknown_owners_the_default(fs, store, space):
    path = data_file(space)
    os.chown(path, 48_123, 48_124)  # no such user or group here
    fs.migrate(path, store)
    assert fs.recall(path, store, default_uid=0, default_gid=0).status == P
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o640)


def test_recall_finds_the_store_by_target_name(fs, space):
    path = data_file(space)
    one, two = MemoryStore("one"), MemoryStore("two")
    fs.migrate(path, two)
    assert fs.recall(path, {"one": one}).status == F
    assert fs.recall(path, {"one": one, "two": two}).status == P


def test_unverified_recall_of_a_changed_object_leaves_the_file_unmanaged(fs, store, space):
    path = data_file(space, size=10)
    fs.migrate(path, store)
    store.corrupt("dir/file.bin", b"0123456789")
    result = fs.recall(path, store, verify=False)
    assert result.status == P and "unmanaged" in result.message
    assert path.read_bytes() == b"0123456789" and state(path) == HsmState.UNMANAGED


# --- release / delete remote ----------------------------------------------------------------------

def test_release_turns_a_premigrated_file_into_a_stub(fs, store, space):
    path = data_file(space)
    assert fs.release(path, store).status == S
    fs.migrate(path, store, premigrate=True)
    assert fs.release(path, store).status == P
    assert state(path) == HsmState.MIGRATED
    assert fs.release(path, store).status == S


def test_release_refuses_a_file_modified_since_premigration(fs, store, space):
    path = data_file(space)
    fs.migrate(path, store, premigrate=True)
    with open(path, "ab") as fh:
        fh.write(b"more")
    result = fs.release(path, store)
    assert result.status == F and state(path) == HsmState.PREMIGRATED
    assert path.read_bytes().endswith(b"more")


def test_delete_remote_unmanages_a_resident_file_and_refuses_a_stub(fs, store, space):
    path, stub = data_file(space, "a.bin"), data_file(space, "b.bin")
    fs.migrate(path, store, premigrate=True)
    fs.migrate(stub, store)
    assert fs.delete_remote(path, store).status == P
    assert state(path) == HsmState.UNMANAGED and not store.exists("a.bin")
    assert fs.delete_remote(path, store).status == S
    other = data_file(space, "c.bin")
    fs.migrate(other, store, premigrate=True)
    store.fail_next(AccessDenied("no delete permission"))
    assert fs.delete_remote(other, store).status == F
    assert state(other) == HsmState.PREMIGRATED  # the record still names the key to retry
    refused = fs.delete_remote(stub, store)
    assert refused.status == F and store.exists("b.bin") and state(stub) == HsmState.MIGRATED


# --- reverse stub ----------------------------------------------------------------------------------

def test_reverse_stub_creates_a_sparse_stub_that_recalls_to_the_original(fs, store, space, tmp_path):
    path = data_file(space, "src/file.bin", size=30 * CHUNK)
    os.chown(path, 1234, 5678)
    digest = sha256_file(path)
    fs.migrate(path, store)
    target = space / "elsewhere/deep/copy.bin"
    result = fs.reverse_stub(target, store, "src/file.bin")
    assert result.status == P, result.message
    st = target.stat()
    assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (
        30 * CHUNK, 0o640, 1234, 5678, MTIME)
    assert st.st_blocks * 512 <= 8192 and state(target) == HsmState.MIGRATED
    assert fs.reverse_stub(target, store, "src/file.bin").status == S
    assert fs.recall(target, store).status == P
    assert sha256_file(target) == digest
    assert not [n for n in os.listdir(target.parent) if n.startswith(".hub-stub-")]


def test_reverse_stub_never_replaces_an_existing_file(fs, store, space):
    path = data_file(space, "src.bin")
    fs.migrate(path, store, premigrate=True)
    existing = write_file(space / "dst.bin", b"precious")
    result = fs.reverse_stub(existing, store, "src.bin")
    assert result.status == F and existing.read_bytes() == b"precious"


def test_reverse_stub_needs_hub_metadata_on_the_object(fs, store, space):
    store.put("foreign", io.BytesIO(b"x"))
    assert fs.reverse_stub(space / "f", store, "foreign").status == F
    assert fs.reverse_stub(space / "g", store, "missing").status == F
    assert not (space / "f").exists()


# --- browsing --------------------------------------------------------------------------------------

def test_stat_list_and_walk_report_kind_details_and_hsm_state(fs, store, space):
    path = data_file(space, "d/a.bin")
    write_file(space / "d/b.txt", b"b")
    os.symlink("a.bin", space / "d/link")
    fs.migrate(path, store)
    entry = fs.stat(path)
    assert (entry.kind, entry.state, entry.size, entry.mtime_ns, entry.stale) == (
        EntryKind.FILE, HsmState.MIGRATED, 3 * CHUNK + 5, MTIME, False)
    listed = fs.list(space / "d")
    assert [(e.rel, e.kind, e.state) for e in listed] == [
        ("d/a.bin", EntryKind.FILE, HsmState.MIGRATED), ("d/b.txt", EntryKind.FILE, HsmState.UNMANAGED),
        ("d/link", EntryKind.SYMLINK, HsmState.UNMANAGED)]
    assert [e.rel for e in fs.walk(space)] == ["d", "d/a.bin", "d/b.txt", "d/link"]


def test_walk_never_follows_symlinks_out_of_the_root(fs, space, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_file(outside / "secret", b"s")
    os.symlink(outside, space / "escape")
    (space / "in").mkdir()
    os.symlink(space / "in", space / "loop")
    rels = [e.rel for e in fs.walk(space)]
    assert rels == ["escape", "in", "loop"]


# --- path safety -----------------------------------------------------------------------------------

def test_paths_resolve_to_a_symlink_free_space_relative_form(fs, space):
    (space / "real").mkdir()
    os.symlink("real", space / "alias")
    assert fs.resolve(space / "alias" / "f") == SpacePath(str(space), "real/f")
    assert fs.resolve(str(space) + "//./real/f") == SpacePath(str(space), "real/f")


@pytest.mark.parametrize("bad", ["relative/path", "/etc/passwd", "{space}/../x", "{space}/a/../b", "{space}x/y"])
def test_paths_outside_the_roots_or_with_dotdot_are_refused(fs, space, bad):
    with pytest.raises(PathRefused):
        fs.resolve(bad.format(space=space))


def _spellings(space: Path) -> list[str]:
    """Paths spelled every way a batch might give them, in an order that would poison a cache
    keyed carelessly (a trailing slash, a dot, a root, a symlinked parent, an escape)."""
    s = str(space)
    return [f"{s}/a/", f"{s}/a/x", f"{s}/a/.", f"{s}/a/y", f"{s}//./a/z", f"{s}/alias/w", f"{s}/alias/v",
            s, f"{s}/", f"{s}/top", f"{s}/escape/secret", f"{s}/escape/other", f"{s}/a/b/..", f"{s}/a/b/c",
            f"{s}/a/b/", f"{s}/a/b/d", f"{s}/a/\0x", f"{s}/a/.."]


def _answer(fs: PosixFilesystem, path: str, parents: dict | None) -> object:
    try:
        return fs.resolve(path, parents=parents)
    except PathRefused as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize("nested", [False, True])
def test_a_batchs_parent_cache_answers_exactly_as_a_fresh_resolve(tmp_path, nested):
    space = tmp_path / "space"
    (space / "a" / "b").mkdir(parents=True)
    os.symlink("a", space / "alias")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", space / "escape")
    roots = [space, space / "a" / "b"] if nested else [space]
    fs = PosixFilesystem(roots, chunk_size=CHUNK)
    paths = _spellings(space)
    fresh = [_answer(fs, p, None) for p in paths]
    assert fresh[1] == SpacePath(str(space), "a/x") and fresh[5] == SpacePath(str(space), "a/w")
    assert str(fresh[10]).startswith("refused")
    for order in (paths, paths[::-1], paths + paths):
        cache: dict = {}
        cached = {p: _answer(fs, p, cache) for p in order}
        assert [cached[p] for p in paths] == fresh


def test_multiple_roots_each_keep_their_own_paths(tmp_path, store):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    fs = PosixFilesystem([one, two], chunk_size=CHUNK)
    write_file(two / "f", b"x")
    assert fs.migrate(two / "f", store).status == P
    with pytest.raises(PathRefused):
        fs.resolve(tmp_path / "three" / "f")


def allocated(path) -> int:
    return path.stat().st_blocks * 512


def _cut_release_at(step, fs, store, path, monkeypatch, **options):
    """Migrate ``path``, dying (like a kill) at ``step`` of its release."""
    from agent.drivers import posix

    def crash(at):
        if at == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(posix, "_failpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        fs.migrate(path, store, **options)
    monkeypatch.setattr(posix, "_failpoint", lambda at: None)
    record = read_record(path)
    assert record.state == HsmState.MIGRATED and record.pending == Pending.STUB
    return record


@pytest.mark.parametrize("step", ["stub:state-written", "stub:punched"])
def test_a_cut_release_is_finished_by_a_rerun_or_recalled_whole(fs, store, space, monkeypatch, step):
    path = data_file(space)
    digest = sha256_file(path)
    _cut_release_at(step, fs, store, path, monkeypatch)
    assert fs.recall(path, store).status == P
    assert sha256_file(path) == digest and state(path) == HsmState.HYDRATED

    other = data_file(space, "dir/other.bin")
    digest = sha256_file(other)
    _cut_release_at(step, fs, store, other, monkeypatch, stub_size=100)
    result = fs.release(other, store)
    assert result.status == P and "interrupted" in result.message
    assert allocated(other) < CHUNK and other.stat().st_mtime_ns == MTIME
    assert fs.recall(other, store).status == P and sha256_file(other) == digest


def test_a_file_appended_to_before_its_cut_release_was_punched_is_uploaded_again(fs, store, space, monkeypatch):
    path = data_file(space)
    old = _cut_release_at("stub:state-written", fs, store, path, monkeypatch)
    with open(path, "ab") as fh:
        fh.write(b"appended after the crash")
    grown = path.read_bytes()

    assert fs.recall(path, store).status == S  # resident: nothing to recall, nothing overwritten
    assert path.read_bytes() == grown and state(path) == HsmState.HYDRATED
    result = fs.migrate(path, store)
    assert result.status == P and result.key != old.key, result
    assert store.raw(old.key) != grown  # the older version is kept, under its own key
    assert fs.recall(path, store).status == P and path.read_bytes() == grown


def test_a_file_rewritten_before_its_cut_release_was_punched_is_never_punched(fs, store, space, monkeypatch):
    path = data_file(space)
    _cut_release_at("stub:state-written", fs, store, path, monkeypatch)
    with open(path, "r+b") as fh:
        fh.seek(CHUNK + 3)
        fh.write(b"edited after the crash")  # same size, a new mtime
    edited = path.read_bytes()

    result = fs.release(path, store)
    assert result.status == F and "modified" in result.message
    assert path.read_bytes() == edited and allocated(path) >= len(edited)
    assert fs.migrate(path, store, premigrate=True).status == P
    assert path.read_bytes() == edited and state(path) == HsmState.PREMIGRATED


def test_a_cut_release_whose_file_was_only_touched_is_finished(fs, store, space, monkeypatch):
    path = data_file(space)
    digest = sha256_file(path)
    _cut_release_at("stub:state-written", fs, store, path, monkeypatch)
    os.utime(path, ns=(MTIME, MTIME + 10**9))  # times changed, content as recorded
    assert fs.migrate(path, store).status == P
    assert allocated(path) < CHUNK and path.stat().st_mtime_ns == MTIME
    assert fs.recall(path, store).status == P and sha256_file(path) == digest


def test_a_stub_written_to_after_its_cut_release_was_punched_is_not_recalled_over(fs, store, space, monkeypatch):
    path = data_file(space)
    old = _cut_release_at("stub:punched", fs, store, path, monkeypatch)
    with open(path, "ab") as fh:
        fh.write(b"appended to the stub")

    result = fs.recall(path, store)
    assert result.status == F and "written to" in result.message
    assert path.read_bytes().endswith(b"appended to the stub")
    record = read_record(path)  # the remote copy, the only one of the content, stays referenced
    assert record.state == HsmState.MIGRATED and record.key == old.key and record.pending is None
    assert fs.migrate(path, store).status == S


def test_holds_data_tells_holes_and_zeros_from_bytes(tmp_path):
    from agent.drivers.posix import holds_data

    path = tmp_path / "sparse"
    with open(path, "wb") as fh:
        fh.write(b"head")
        fh.seek(10 * CHUNK)
        fh.write(bytes(CHUNK))  # zeros written as data
        fh.write(b"tail")
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        assert holds_data(fd, 0, 4) and holds_data(fd, 3, size)
        assert not holds_data(fd, 4, size - 4, chunk_size=1000)
        assert holds_data(fd, 4, size, chunk_size=1000)
        assert not holds_data(fd, size, size + 10) and not holds_data(fd, 5, 5)
    finally:
        os.close(fd)


def test_record_pending_stub_is_finished_by_a_rerun(fs, store, space, monkeypatch):
    from agent.drivers import posix

    path = data_file(space)
    digest = sha256_file(path)

    def crash(step):
        if step == "stub:punched":
            raise KeyboardInterrupt  # something the driver does not catch, like a kill

    monkeypatch.setattr(posix, "_failpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        fs.migrate(path, store)
    assert read_record(path).pending == Pending.STUB
    monkeypatch.setattr(posix, "_failpoint", lambda step: None)
    assert fs.migrate(path, store).status == P
    assert read_record(path).pending is None and path.stat().st_mtime_ns == MTIME
    assert fs.recall(path, store).status == P and sha256_file(path) == digest
