"""The data path's fast paths keep every data-safety invariant: composite checksums for uploads in
several parts, S3 verification from the PutObject answer, trusted conditional writes, and the
shared durability of small-file batches (issue 4's benchmark work)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from agent import actions
from agent.drivers.fs import FolderStore
from agent.drivers.memory import MemoryStore
from agent.drivers.posix import PosixFilesystem, ResultStatus
from agent.hsm.metadata import parse_metadata
from agent.hsm.state import HsmState, read_record, write_record
from agent.transfer import Checksum, RetryPolicy, SourceChanged, checksum_fd, upload_fd
from tests.agent import servers
from tests.agent.conftest import unique_name
from tests.agent.hsm_fixtures import sha256_file, write_random
from tests.agent.s3_helpers import new_store

CHUNK = 64 * 1024
PART = 3 * CHUNK + 7  # parts not aligned with the read chunks


class MultipartMemory(MemoryStore):
    """A memory store that says it uploads in parts of ``PART`` bytes from 2 * CHUNK on."""

    def upload_part_size(self, size: int) -> int | None:
        return PART if size >= 2 * CHUNK else None


def composite(data: bytes, part: int) -> str:
    """The composite checksum, computed independently of the agent's code."""
    digests = b"".join(hashlib.sha256(data[i:i + part]).digest() for i in range(0, len(data), part))
    return hashlib.sha256(digests).hexdigest()


@pytest.fixture
def fs(space: Path) -> PosixFilesystem:
    return PosixFilesystem([space], chunk_size=CHUNK, retry=RetryPolicy(attempts=2, sleep=lambda s: None))


# --- composite checksums ------------------------------------------------------------------------------

def test_composite_checksum_is_sha256_of_the_part_digests(tmp_path: Path):
    path = write_random(tmp_path / "f", 10 * PART + 123)
    data = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        summed = checksum_fd(fd, size=len(data), part_size=PART, chunk_size=CHUNK, workers=2)
    finally:
        os.close(fd)
    assert (summed.sha256, summed.size, len(summed.parts)) == (composite(data, PART), len(data), 11)
    incremental = Checksum(PART)
    for i in range(0, len(data), 1000):
        incremental.update(data[i:i + 1000])
    assert incremental.finish() == composite(data, PART)
    plain = Checksum(None)
    plain.update(data)
    assert plain.finish() == hashlib.sha256(data).hexdigest()


def test_a_multipart_upload_records_a_composite_and_recalls_it_verified(fs, space):
    store = MultipartMemory()
    path = write_random(space / "big.bin", 7 * PART + 5)
    data = path.read_bytes()
    assert fs.migrate(path, store).status == ResultStatus.PROCESSED
    record = read_record(path)
    meta = parse_metadata(store.head(record.key).metadata)
    assert (record.sha256, record.part_size) == (meta.sha256, meta.part_size) == (composite(data, PART), PART)
    assert hashlib.sha256(store.raw(record.key)).hexdigest() == hashlib.sha256(data).hexdigest()
    assert fs.recall(path, store).status == ResultStatus.PROCESSED
    assert path.read_bytes() == data and read_record(path).state == HsmState.HYDRATED


def test_a_single_part_upload_keeps_a_plain_sha256(fs, space):
    store = MultipartMemory()
    path = write_random(space / "small.bin", CHUNK + 1)  # streamed, but sent in one part
    assert fs.migrate(path, store, premigrate=True).status == ResultStatus.PROCESSED
    record = read_record(path)
    assert (record.sha256, record.part_size) == (sha256_file(path), None)


def test_a_wrong_composite_checksum_refuses_the_release(fs, space):
    store = MultipartMemory()
    path = write_random(space / "big.bin", 5 * PART)
    digest = sha256_file(path)
    assert fs.migrate(path, store, premigrate=True).status == ResultStatus.PROCESSED
    fd = os.open(path, os.O_RDWR)
    try:  # the record's composite no longer matches the bytes (nor the remote copy)
        write_record(fd, replace(read_record(fd), sha256="0" * 64))
    finally:
        os.close(fd)
    result = fs.release(path, store)
    assert result.status == ResultStatus.FAILED
    assert read_record(path).state == HsmState.PREMIGRATED and sha256_file(path) == digest


def test_a_remote_copy_with_another_part_size_does_not_verify(fs, space):
    store = MultipartMemory()
    path = write_random(space / "big.bin", 5 * PART)
    digest = sha256_file(path)
    assert fs.migrate(path, store, premigrate=True).status == ResultStatus.PROCESSED
    fd = os.open(path, os.O_RDWR)
    try:  # a record naming a plain SHA-256 of the same bytes: another format than the object's
        write_record(fd, replace(read_record(fd), sha256=digest, part_size=None))
    finally:
        os.close(fd)
    assert fs.release(path, store, verify_content=False).status == ResultStatus.FAILED
    assert read_record(path).state == HsmState.PREMIGRATED and sha256_file(path) == digest


def test_a_part_changed_after_hashing_fails_the_upload_before_it_commits(tmp_path: Path):
    path = write_random(tmp_path / "f", 4 * PART)
    fd = os.open(path, os.O_RDWR)
    try:
        summed = checksum_fd(fd, size=4 * PART, part_size=PART, chunk_size=CHUNK)
        os.pwrite(fd, b"X", 2 * PART + 1)  # the third part changes between the hash and the upload
        store = MemoryStore()
        with pytest.raises(SourceChanged):
            upload_fd(store, "k", fd, size=4 * PART, metadata={}, chunk_size=CHUNK, part_size=PART,
                      expected_parts=summed.parts)
        assert not store.exists("k")
    finally:
        os.close(fd)


def test_records_and_metadata_without_part_size_stay_valid():
    old = (b'{"inode":2,"key":"k","mtime_ns":1,"sha256":"' + b"a" * 64
           + b'","size":5,"state":"migrated","stub_size":0,"target":"t","v":1}')
    from agent.hsm.state import HsmRecord

    record = HsmRecord.from_bytes(old)
    assert record.part_size is None and HsmRecord.from_bytes(record.to_bytes()) == record


# --- small-file batches: durability shared per group --------------------------------------------------

def folder_ctx(space: Path, target: Path, **kwargs) -> actions.ActionContext:
    def open_target(name: str) -> FolderStore:
        return FolderStore(target)

    return actions.ActionContext(roots=[space], open_target=open_target, chunk_size=CHUNK, **kwargs)


def test_a_folder_batch_flushes_the_target_before_recording_and_syncs_the_source(space, tmp_path, monkeypatch):
    """The general path's staged groups (the small-file lane, on by default, has its own test in
    ``test_small_file_lane.py``)."""
    target = tmp_path / "target"
    target.mkdir()
    files = [write_random(space / f"d/{i}.bin", 100 * i + 1, seed=i) for i in range(20)]
    events: list[str] = []
    flush, sync_roots = FolderStore.flush, PosixFilesystem.sync_roots

    def flushed(store: FolderStore) -> None:
        assert all(read_record(f) is None for f in files)  # nothing recorded before the flush
        events.append("flush")
        flush(store)

    def synced(fs: PosixFilesystem) -> None:
        assert all(read_record(f).state == HsmState.PREMIGRATED for f in files)
        events.append("sync")
        sync_roots(fs)

    monkeypatch.setattr(FolderStore, "flush", flushed)
    monkeypatch.setattr(PosixFilesystem, "sync_roots", synced)
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    out = actions.migrate(folder_ctx(space, target, lane_workers=None), [{"path": str(f)} for f in files],
                          target="t", premigrate=True)
    assert [o["status"] for o in out] == ["processed"] * 20
    assert events == ["flush", "sync"] and fsyncs == []  # no per-file fsync at all
    for f in files:
        assert (target / read_record(f).key).read_bytes() == f.read_bytes()


def test_a_redelivered_folder_batch_is_a_no_op(space, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    files = [write_random(space / f"{i}.bin", 50 * i + 1, seed=i) for i in range(10)]
    items = [{"path": str(f)} for f in files]
    first = actions.migrate(folder_ctx(space, target), items, target="t")
    assert [o["status"] for o in first] == ["processed"] * 10
    again = actions.migrate(folder_ctx(space, target), items, target="t")
    assert [o["status"] for o in again] == ["skipped"] * 10
    assert sorted(p.name for p in target.iterdir()) == sorted(f.name for f in files)


def test_a_torn_object_left_by_a_crash_before_the_flush_is_never_reused(space, tmp_path):
    """A crash before the flush may leave an object with our metadata and the wrong bytes: the
    re-run reads it back, finds it is not whole, and uploads to another key instead."""
    target = tmp_path / "target"
    target.mkdir()
    path = write_random(space / "f.bin", 5000)
    store = FolderStore(target)
    fs = PosixFilesystem([space], chunk_size=CHUNK)
    assert fs.migrate(path, store, premigrate=True).status == ResultStatus.PROCESSED
    record = read_record(path)
    torn = target / record.key
    with open(torn, "r+b") as handle:  # same size and metadata, other bytes: as after a crash
        handle.write(b"\0" * 5000)
    fd = os.open(path, os.O_RDWR)
    try:
        os.removexattr(fd, "user.hub.hsm")  # the record was never made durable
    finally:
        os.close(fd)
    result = fs.migrate(path, store, premigrate=True)
    assert result.status == ResultStatus.PROCESSED and result.key != record.key
    assert (target / result.key).read_bytes() == path.read_bytes()
    assert torn.read_bytes() == b"\0" * 5000  # never overwritten


# --- S3: the PutObject answer as the verification, trusted If-None-Match -----------------------------

@pytest.mark.emulators
def test_moto_put_is_verified_by_its_md5_etag_and_a_wrong_etag_is_not(moto_server: servers.Server):
    store = new_store(moto_server, unique_name())
    try:
        assert store.put("a", _bytes(b"hello"), size=5).verified
        # A server answering with another ETag than the MD5 of what was sent is not trusted.
        store._client.meta.events.register("after-call.s3.PutObject", _corrupt_etag)
        assert not store.put("b", _bytes(b"hello"), size=5).verified
    finally:
        store.close()


def _corrupt_etag(parsed: dict, **_: object) -> None:
    parsed["ETag"] = '"' + "0" * 32 + '"'


def _bytes(data: bytes):
    import io

    return io.BytesIO(data)


@pytest.mark.emulators
def test_moto_honours_if_none_match_so_the_check_first_is_skipped(moto_server: servers.Server):
    store = new_store(moto_server, unique_name())
    try:
        assert store.trusts_conditional_writes()
        heads: list[str] = []
        store._client.meta.events.register("before-call.s3.HeadObject", lambda **kw: heads.append("head"))
        store.put("k", _bytes(b"1"), size=1, if_absent=True)
        from agent.drivers.base import AlreadyExists

        with pytest.raises(AlreadyExists):
            store.put("k", _bytes(b"2"), size=1, if_absent=True)
        assert heads == [] and store.head("k").size == 1
        assert [o.key for o in store.list(".hub-probe/").objects] == []  # the probe cleaned up
    finally:
        store.close()


@pytest.mark.emulators
def test_rclone_ignores_if_none_match_so_the_check_first_stays(rclone_server: servers.Server):
    store = new_store(rclone_server, unique_name())
    try:
        assert not store.trusts_conditional_writes()
        store.put("k", _bytes(b"1"), size=1, if_absent=True)
        from agent.drivers.base import AlreadyExists

        with pytest.raises(AlreadyExists):
            store.put("k", _bytes(b"2"), size=1, if_absent=True)
        assert b"".join(store.iter_read("k")) == b"1"
    finally:
        store.close()


@pytest.mark.emulators
def test_a_small_file_to_moto_is_verified_without_a_head(moto_server: servers.Server, space: Path, fs):
    store = new_store(moto_server, unique_name())
    try:
        store.trusts_conditional_writes()
        calls: list[str] = []
        store._client.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
        path = write_random(space / "f.bin", 1000)
        assert fs.migrate(path, store, premigrate=True).status == ResultStatus.PROCESSED
        assert calls == ["PutObject"]
        assert parse_metadata(store.head("f.bin").metadata).sha256 == sha256_file(path)
    finally:
        store.close()
