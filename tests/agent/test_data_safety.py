"""Data-safety invariants of the HSM operations (issue 4, section 8), each proven with real bytes
and SHA-256 checksums, including real SIGKILLs of an agent process mid-migrate and mid-recall.

The promise under test: no operation, interrupted at any point, loses or silently corrupts a file.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.drivers.memory import MemoryStore
from agent.drivers.posix import PosixFilesystem, ResultStatus
from agent.hsm.metadata import parse_metadata
from agent.hsm.state import HsmState, Pending, read_record
from agent.transfer import RetryPolicy
from tests.agent.hsm_fixtures import (
    BreakingReadStore,
    CorruptingStore,
    DirStore,
    HeadLiesStore,
    MiB,
    manifest,
    sha256_file,
    write_file,
    write_random,
)

ROOT = Path(__file__).resolve().parents[2]
CHUNK = 256 * 1024
MTIME = 1_500_000_000_987_654_321
P, F, A, S = ResultStatus.PROCESSED, ResultStatus.FAILED, ResultStatus.ABORTED, ResultStatus.SKIPPED
smoke = pytest.mark.smoke


@pytest.fixture
def fs(space):
    return PosixFilesystem([space], chunk_size=CHUNK, retry=RetryPolicy(attempts=2, sleep=lambda s: None))


def data_file(space, name="f.bin", size=12 * CHUNK + 3):
    path = write_random(space / name, size, seed=len(name))
    os.utime(path, ns=(MTIME, MTIME))
    return path


def state(path):
    rec = read_record(path)
    return rec.state if rec else HsmState.UNMANAGED


def assert_stub(path, size):
    st = os.stat(path)
    rec = read_record(path)
    assert rec.state == HsmState.MIGRATED and st.st_size == size == rec.size


# --- 1. blocks are released only after the remote checksum matches the bytes read -----------------

@smoke
def test_file_is_not_stubbed_when_the_store_reports_a_different_checksum(fs, space):
    path = data_file(space)
    digest = sha256_file(path)
    store = HeadLiesStore()
    result = fs.migrate(path, store)
    assert result.status == F and "verification failed" in result.message
    assert state(path) == HsmState.UNMANAGED and sha256_file(path) == digest
    assert not store.exists("f.bin")  # the unverifiable upload is not left behind


@smoke
def test_file_is_not_stubbed_when_the_stored_bytes_differ_from_the_bytes_read(fs, space):
    path = data_file(space)
    digest = sha256_file(path)
    result = fs.migrate(path, CorruptingStore(), verify_content=True)
    assert result.status == F and "verification failed" in result.message
    assert state(path) == HsmState.UNMANAGED and sha256_file(path) == digest
    assert os.stat(path).st_blocks * 512 >= os.stat(path).st_size  # nothing released


@smoke
def test_release_refuses_when_the_stored_object_was_corrupted_after_premigration(fs, space):
    path = data_file(space)
    digest = sha256_file(path)
    store = MemoryStore()
    assert fs.migrate(path, store, premigrate=True).status == P
    store.corrupt("f.bin", b"\0" * os.stat(path).st_size)
    result = fs.release(path, store)
    assert result.status == F and "verification failed" in result.message
    assert state(path) == HsmState.PREMIGRATED and sha256_file(path) == digest


@smoke
def test_recall_of_a_corrupted_object_fails_and_leaves_the_stub(fs, space):
    path = data_file(space)
    store = MemoryStore()
    fs.migrate(path, store)
    store.corrupt("f.bin", os.urandom(os.stat(path).st_size))
    result = fs.recall(path, store)
    assert result.status == F and "checksum" in result.message
    assert_stub(path, 12 * CHUNK + 3)
    assert read_record(path).pending is None
    assert os.stat(path).st_blocks * 512 <= 8192  # the bad bytes were dropped again


# --- 2. a file changed between upload start and release is never released -------------------------

def _modify(path: Path, how: str) -> None:
    time.sleep(0.02)  # let coarse kernel timestamps move on
    if how == "size":
        with open(path, "ab") as fh:
            fh.write(b"appended")
    elif how == "mtime":
        os.utime(path, ns=(MTIME, MTIME + 1_000_000_000))
    elif how == "ctime":
        os.chmod(path, 0o600)
    elif how == "inode":
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(path.read_bytes())
        os.utime(tmp, ns=(MTIME, MTIME))
        os.replace(tmp, path)


@smoke
@pytest.mark.parametrize("skip_modified", [False, True], ids=["fail", "skip"])
@pytest.mark.parametrize("how", ["size", "mtime", "ctime", "inode"])
def test_file_modified_during_upload_is_not_stubbed(fs, space, how, skip_modified):
    path = data_file(space)
    store = MemoryStore()
    fired = []

    def progress(done, total):
        if not fired:
            fired.append(done)
            _modify(path, how)

    result = fs.migrate(path, store, progress=progress, skip_modified_during_migrate=skip_modified)
    assert fired
    assert result.status == (S if skip_modified else F), result.message
    assert "modified during migrate" in result.message
    assert state(path) == HsmState.UNMANAGED
    st = os.stat(path)
    assert st.st_blocks * 512 >= 12 * CHUNK  # still resident
    assert not store.list().objects  # the upload of a moving target is discarded


# --- 3. interrupted recalls and migrations: the stub stays a stub, the file stays intact ------------

@smoke
def test_recall_dying_mid_stream_leaves_the_stub_and_a_rerun_completes(fs, space):
    path = data_file(space)
    digest = sha256_file(path)
    store = BreakingReadStore(fail_after=5 * CHUNK + 17, breaks=1)
    fs.migrate(path, store)
    result = fs.recall(path, store)
    assert result.status == F
    assert_stub(path, 12 * CHUNK + 3)
    assert os.stat(path).st_mtime_ns == MTIME
    again = fs.recall(path, store)
    assert again.status == P, again.message
    assert sha256_file(path) == digest and state(path) == HsmState.HYDRATED


def _agent(op: str, space: Path, store: Path, path: Path, *extra: str) -> subprocess.Popen:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.agent.hsm_fixtures", op, str(space), str(store), str(path),
         "--chunk", str(MiB), *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when_paused(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.startswith("paused"), (line, proc.stderr.read())
    proc.kill()  # SIGKILL: no cleanup code runs
    assert proc.wait(timeout=30) == -9


def test_sigkilled_recall_of_a_big_file_leaves_the_stub_and_a_rerun_completes(space, tmp_path):
    size = 48 * MiB
    path = write_random(space / "big.bin", size)
    digest = sha256_file(path)
    store_dir = tmp_path / "objects"
    fs = PosixFilesystem([space], chunk_size=MiB)
    store = DirStore(store_dir)
    assert fs.migrate(path, store).status == P

    proc = _agent("recall", space, store_dir, path, "--pause-at", str(size // 2))
    _kill_when_paused(proc)

    rec = read_record(path)
    assert (rec.state, rec.pending) == (HsmState.MIGRATED, Pending.RECALL)  # not marked resident
    assert os.stat(path).st_size == size
    assert sha256_file(path) != digest  # partial bytes really were written before the kill
    assert fs.stat(path).state == HsmState.MIGRATED
    result = fs.recall(path, store)
    assert result.status == P, result.message
    assert sha256_file(path) == digest and state(path) == HsmState.HYDRATED


def test_sigkill_mid_upload_leaves_the_file_intact_and_a_rerun_finishes(space, tmp_path):
    size = 48 * MiB
    path = write_random(space / "big.bin", size)
    os.utime(path, ns=(MTIME, MTIME))
    digest = sha256_file(path)
    store_dir = tmp_path / "objects"

    proc = _agent("migrate", space, store_dir, path, "--pause-at", str(size // 2))
    _kill_when_paused(proc)

    assert state(path) == HsmState.UNMANAGED and sha256_file(path) == digest
    store = DirStore(store_dir)
    assert not store.exists("big.bin")  # a half upload never becomes an object
    fs = PosixFilesystem([space], chunk_size=MiB)
    assert fs.migrate(path, store).status == P
    assert_stub(path, size)
    assert fs.recall(path, store).status == P and sha256_file(path) == digest


MIGRATE_STEPS = ["migrate:uploaded", "migrate:premigrated", "stub:state-written", "stub:punched"]


@pytest.mark.parametrize("step", MIGRATE_STEPS)
def test_sigkill_at_each_migrate_step_loses_nothing_and_a_rerun_finishes(space, tmp_path, step):
    path = data_file(space, size=3 * MiB + 11)
    digest = sha256_file(path)
    store_dir = tmp_path / "objects"
    proc = _agent("migrate", space, store_dir, path, "--failpoint", step)
    assert proc.wait(timeout=30) == -9, proc.stderr.read()

    store = DirStore(store_dir)
    fs = PosixFilesystem([space], chunk_size=MiB)
    if state(path) in (HsmState.UNMANAGED, HsmState.PREMIGRATED):
        assert sha256_file(path) == digest  # resident states hold the real bytes
    result = fs.migrate(path, store)
    assert result.status == P, result.message
    assert_stub(path, 3 * MiB + 11)
    assert os.stat(path).st_mtime_ns == MTIME
    assert [o.key for o in store.list().objects] == ["f.bin"]  # an interrupted upload is reused
    assert fs.recall(path, store).status == P and sha256_file(path) == digest


@pytest.mark.parametrize("step", ["recall:started", "recall:written"])
def test_sigkill_at_each_recall_step_leaves_a_stub_and_a_rerun_finishes(space, tmp_path, step):
    path = data_file(space, size=3 * MiB + 11)
    digest = sha256_file(path)
    store_dir = tmp_path / "objects"
    fs = PosixFilesystem([space], chunk_size=MiB)
    store = DirStore(store_dir)
    fs.migrate(path, store)
    proc = _agent("recall", space, store_dir, path, "--failpoint", step)
    assert proc.wait(timeout=30) == -9, proc.stderr.read()

    assert_stub(path, 3 * MiB + 11)
    assert read_record(path).pending == Pending.RECALL
    assert fs.recall(path, store).status == P
    assert sha256_file(path) == digest and state(path) == HsmState.HYDRATED


# --- 4. running any operation twice equals running it once ----------------------------------------

@smoke
def test_every_operation_run_twice_equals_once(fs, space):
    store = MemoryStore()
    path = data_file(space)
    digest = sha256_file(path)

    def twice(op, *args, **kwargs):
        first, second = op(*args, **kwargs), op(*args, **kwargs)
        snapshot = (state(path), os.stat(path).st_size, os.stat(path).st_mtime_ns, sorted(store._objects))
        return first, second, snapshot

    first, second, after_premigrate = twice(fs.migrate, path, store, premigrate=True)
    assert (first.status, second.status) == (P, S)
    first, second, _ = twice(fs.migrate, path, store)
    assert (first.status, second.status) == (P, S)
    first, second, _ = twice(fs.recall, path, store)
    assert (first.status, second.status) == (P, S)
    first, second, _ = twice(fs.release, path, store)
    assert (first.status, second.status) == (P, S)
    first, second, _ = twice(fs.reverse_stub, space / "copy.bin", store, "f.bin")
    assert (first.status, second.status) == (P, S)
    fs.recall(path, store)
    first, second, snapshot = twice(fs.delete_remote, path, store)
    assert (first.status, second.status) == (P, S)
    assert snapshot[0] == HsmState.UNMANAGED and sha256_file(path) == digest
    assert after_premigrate[3] == ["f.bin"]


# --- 5. an existing remote object with other content is never overwritten -------------------------

@smoke
def test_existing_remote_object_with_different_content_is_not_overwritten(fs, space):
    store = MemoryStore()
    store.put("f.bin", io.BytesIO(b"another file's only copy"))
    path = data_file(space)
    digest = sha256_file(path)
    result = fs.migrate(path, store)
    assert result.status == P and result.key != "f.bin" and result.key.startswith("f.bin~")
    assert store.raw("f.bin") == b"another file's only copy"
    assert fs.recall(path, store).status == P and sha256_file(path) == digest


@smoke
def test_same_content_from_another_file_is_not_shared_either(fs, space):
    # Sharing would let delete_remote of one file remove the other's only copy.
    store = MemoryStore()
    one = data_file(space, "a/f.bin")
    fs.migrate(one, store)
    os.rename(space / "a", space / "b")
    two = data_file(space, "a/f.bin")
    result = fs.migrate(two, store)
    assert result.status == P and result.key != "a/f.bin"
    assert len(store.list().objects) == 2


@smoke
def test_overwrite_replaces_the_existing_object_only_when_asked(fs, space):
    store = MemoryStore()
    store.put("f.bin", io.BytesIO(b"stale"))
    path = data_file(space)
    result = fs.migrate(path, store, overwrite=True)
    assert (result.status, result.key) == (P, "f.bin")
    assert parse_metadata(store.head("f.bin").metadata).sha256 == read_record(path).sha256


# --- 6. paths outside the space are refused -------------------------------------------------------

@smoke
def test_paths_outside_the_root_dotdot_and_escaping_symlinks_are_refused(fs, space, tmp_path):
    store = MemoryStore()
    outside = tmp_path / "outside"
    victim = write_file(outside / "victim.bin", b"must not move")
    os.symlink(outside, space / "escape-dir")
    os.symlink(victim, space / "escape-file")
    inside = data_file(space)
    candidates = [victim, space / ".." / "outside" / "victim.bin", space / "escape-dir" / "victim.bin",
                  space / "escape-file", "relative/f.bin", f"{space}/x/../f.bin"]
    operations = [
        lambda p: fs.migrate(p, store), lambda p: fs.recall(p, store), lambda p: fs.release(p, store),
        lambda p: fs.delete_remote(p, store), lambda p: fs.reverse_stub(p, store, "f.bin"),
    ]
    fs.migrate(inside, store, premigrate=True)
    for candidate in candidates:
        for operation in operations:
            result = operation(candidate)
            assert result.status == F and result.message.startswith("refused"), (candidate, result)
    assert victim.read_bytes() == b"must not move" and read_record(victim) is None
    assert not store.exists("escape-dir/victim.bin")
    assert sorted(os.listdir(outside)) == ["victim.bin"]


# --- 7. a mixed tree survives migrate + recall, and reverse stubs elsewhere ------------------------

def _build_mixed_tree(root: Path) -> None:
    write_file(root / "empty", b"", mode=0o600)
    write_file(root / "one-byte", b"x", mode=0o444)
    sparse = root / "sparse.img"
    with open(sparse, "wb") as fh:
        fh.truncate(64 * MiB)
        fh.seek(20 * MiB)
        fh.write(b"island of data" * 1000)
    write_random(root / "big" / "hundred.bin", 100 * MiB, seed=7)
    write_file(root / "ünïcødé 文件" / "naïve ☃.txt", "héllo wörld".encode(), mode=0o640)
    write_file(root / "with spaces" / "a file with spaces.txt", b"spaces " * 999, mode=0o664)
    write_file(root / "links" / "original.dat", os.urandom(3 * CHUNK + 1), mode=0o644)
    os.link(root / "links" / "original.dat", root / "links" / "hardlink.dat")
    os.symlink("original.dat", root / "links" / "symlink.dat")
    os.symlink("/etc/hostname", root / "links" / "outside-link")
    os.chown(root / "with spaces" / "a file with spaces.txt", 4321, 8765)
    for index, (dirpath, _, names) in enumerate(sorted(os.walk(root))):
        for offset, name in enumerate(sorted(names)):
            path = Path(dirpath) / name
            if not path.is_symlink():
                stamp = MTIME + (index * 100 + offset) * 1_000_003
                os.utime(path, ns=(stamp, stamp))


def test_mixed_tree_migrates_to_small_stubs_and_recalls_with_identical_manifest(space, tmp_path):
    _build_mixed_tree(space)
    before = manifest(space)
    store = MemoryStore()
    fs = PosixFilesystem([space], chunk_size=4 * MiB)
    candidates = [e for e in fs.walk(space) if e.kind != "directory"]
    results = {os.path.relpath(r.path, space): r for r in (fs.migrate(e.path, store) for e in candidates)}

    assert results["links/symlink.dat"].status == S and "symlink" in results["links/symlink.dat"].message
    assert results["links/outside-link"].status == F  # an escaping link is refused outright
    hard = [results["links/original.dat"], results["links/hardlink.dat"]]
    assert sorted(r.status for r in hard) == [P, S]  # one inode, migrated once
    regular = [rel for rel, entry in before.items() if entry[0] == "file"]
    for rel in regular:
        path = space / rel
        st = path.lstat()
        assert state(path) == HsmState.MIGRATED, (rel, results[rel])
        assert st.st_blocks * 512 <= 8192, rel  # data released (an xattr block may remain)
        kept = (st.st_size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
        assert kept == before[rel][2:], rel  # the stub keeps size, mode, uid, gid and mtime
    assert manifest(space).keys() == before.keys()

    for entry in candidates:
        fs.recall(entry.path, store)
    assert manifest(space) == before
    assert os.stat(space / "links/original.dat").st_ino == os.stat(space / "links/hardlink.dat").st_ino
    assert os.stat(space / "sparse.img").st_blocks * 512 < 8 * MiB  # holes stayed holes

    # Reverse stubs in another space, built only from the objects and their metadata.
    other = tmp_path / "restore"
    other.mkdir()
    elsewhere = PosixFilesystem([other], chunk_size=4 * MiB)
    keys = [info.key for info in store.list().objects]
    for key in keys:
        rel = parse_metadata(store.head(key).metadata).path
        assert elsewhere.reverse_stub(other / rel, store, key).status == P
        assert elsewhere.recall(other / rel, store).status == P
    restored = manifest(other)
    # Hard links come back as one file (the inode was uploaded once, under its first name).
    assert restored == {rel: entry for rel, entry in before.items() if entry[0] == "file" and rel in restored}
    assert len(restored) == len(regular) - 1


@smoke
def test_agent_processes_print_machine_readable_results(space, tmp_path):
    # The subprocess runner used by the SIGKILL tests really performs the operation when not killed.
    path = data_file(space, size=1000)
    proc = _agent("migrate", space, tmp_path / "objects", path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["status"] == "processed"
    assert state(path) == HsmState.MIGRATED
