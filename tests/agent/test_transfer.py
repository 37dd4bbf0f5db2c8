"""The transfer engine: hashing exactly the bytes moved, bounded memory, retries on transient
errors only, resumable downloads, verification, progress and cancel."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc

import pytest

from agent.drivers.base import DriverError, ObjectInfo, PermanentError, TransientError
from agent.drivers.memory import MemoryStore
from agent.hsm.metadata import ObjectMetadata, to_metadata
from agent.transfer import (
    Cancelled,
    HashingFileReader,
    RetryPolicy,
    VerificationError,
    call_with_retries,
    download_to_fd,
    hash_fd,
    upload_fd,
    verify_remote,
)
from tests.agent.hsm_fixtures import (
    BreakingReadStore,
    ChunkLimitStore,
    CorruptingStore,
    DirStore,
    HeadLiesStore,
    MiB,
    sha256_file,
    write_random,
)

smoke = pytest.mark.smoke
CHUNK = 64 * 1024


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def policy(attempts: int = 4) -> tuple[RetryPolicy, Sleeps]:
    sleeps = Sleeps()
    return RetryPolicy(attempts=attempts, initial_delay=1.0, factor=2.0, max_delay=3.0, sleep=sleeps), sleeps


def meta_for(data: bytes) -> dict[str, str]:
    return to_metadata(ObjectMetadata(sha256=hashlib.sha256(data).hexdigest(), size=len(data), mode=0o644,
                                      uid=0, gid=0, mtime_ns=1, atime_ns=1, path="f"))


@pytest.fixture
def source(tmp_path):
    path = write_random(tmp_path / "src.bin", 5 * CHUNK + 123)
    fd = os.open(path, os.O_RDONLY)
    yield path, fd
    os.close(fd)


@smoke
def test_reader_hashes_exactly_the_bytes_it_returned_and_cannot_rewind(source):
    path, fd = source
    reader = HashingFileReader(fd, total=None, chunk_size=CHUNK)
    first = reader.read(1000)
    assert len(first) == 1000
    assert not reader.seekable()
    assert reader.sha256() == hashlib.sha256(first).hexdigest()
    rest = reader.read()
    assert reader.sha256() == hashlib.sha256(first + rest).hexdigest() == sha256_file(path)
    assert reader.bytes_read == path.stat().st_size


@smoke
def test_hash_fd_matches_an_independent_hash(source):
    path, fd = source
    assert hash_fd(fd, chunk_size=CHUNK) == (sha256_file(path), path.stat().st_size)


@smoke
def test_upload_streams_in_the_pieces_the_store_asks_for(source):
    path, fd = source
    store = ChunkLimitStore(read_size=10_000)
    up = upload_fd(store, "k", fd, size=path.stat().st_size, metadata={}, chunk_size=CHUNK)
    assert store.largest <= 10_000
    assert up.sha256 == sha256_file(path) == hashlib.sha256(store.raw("k")).hexdigest()


def test_upload_and_download_keep_memory_bounded_for_a_large_file(tmp_path):
    path = write_random(tmp_path / "big.bin", 24 * MiB)
    store = DirStore(tmp_path / "store")
    fd = os.open(path, os.O_RDONLY)
    out = os.open(tmp_path / "back.bin", os.O_RDWR | os.O_CREAT)
    try:
        tracemalloc.start()
        upload_fd(store, "big", fd, size=24 * MiB, metadata={}, chunk_size=MiB)
        _, up_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sha, count = download_to_fd(store, "big", out, size=24 * MiB, chunk_size=MiB)
        _, down_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.close(fd)
        os.close(out)
    assert up_peak < 4 * MiB and down_peak < 4 * MiB, (up_peak, down_peak)
    assert (sha, count) == (sha256_file(path), 24 * MiB)


@smoke
def test_progress_reports_growing_byte_counts_with_the_total(source):
    path, fd = source
    seen: list[tuple[int, int | None]] = []
    upload_fd(MemoryStore(), "k", fd, size=path.stat().st_size, metadata={}, chunk_size=CHUNK,
              progress=lambda done, total: seen.append((done, total)))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert len(seen) >= 5


@smoke
def test_cancel_between_chunks_stops_the_upload_and_stores_nothing(source):
    path, fd = source
    store = MemoryStore()
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        upload_fd(store, "k", fd, size=path.stat().st_size, metadata={}, chunk_size=CHUNK,
                  should_cancel=lambda: next(calls) >= 2)
    assert not store.exists("k")


@smoke
def test_cancel_stays_cancel_when_the_driver_wraps_the_readers_exception(source):
    class WrappingStore(MemoryStore):
        def put(self, key, stream, **kwargs):
            try:
                return super().put(key, stream, **kwargs)
            except Exception as exc:
                raise TransientError("upload interrupted") from exc

    path, fd = source
    retry, _ = policy()
    with pytest.raises(Cancelled):
        upload_fd(WrappingStore(), "k", fd, size=path.stat().st_size, metadata={}, chunk_size=CHUNK,
                  should_cancel=lambda: True, retry=retry)


@smoke
def test_transient_errors_are_retried_with_growing_backoff(source):
    path, fd = source
    store = MemoryStore()
    store.fail_next(TransientError("503"))
    store.fail_next(TransientError("503"))
    retry, sleeps = policy()
    up = upload_fd(store, "k", fd, size=path.stat().st_size, metadata={}, chunk_size=CHUNK, retry=retry)
    assert up.sha256 == sha256_file(path)
    assert len(sleeps.calls) == 2 and sleeps.calls[0] < sleeps.calls[1] <= 2.0


@smoke
def test_permanent_errors_are_not_retried():
    store = MemoryStore()
    store.fail_next(PermanentError("bad credentials"))
    retry, sleeps = policy()
    with pytest.raises(PermanentError):
        call_with_retries(lambda: store.head("k"), retry)
    assert sleeps.calls == []


@smoke
def test_retries_give_up_after_the_configured_attempts():
    store = MemoryStore()
    for _ in range(5):
        store.fail_next(TransientError("timeout"))
    retry, sleeps = policy(attempts=3)
    with pytest.raises(TransientError):
        call_with_retries(lambda: store.head("k"), retry)
    assert len(sleeps.calls) == 2
    assert all(delay <= 3.0 for delay in sleeps.calls)


@smoke
def test_verify_remote_accepts_a_matching_object():
    store, data = MemoryStore(), b"hello world"
    store.put("k", io.BytesIO(data), metadata=meta_for(data))
    info = verify_remote(store, "k", sha256=hashlib.sha256(data).hexdigest(), size=len(data), content=True)
    assert info.size == len(data)


@smoke
def test_verify_remote_rejects_a_head_that_reports_another_checksum():
    store, data = HeadLiesStore(), b"hello world"
    store.put("k", io.BytesIO(data), metadata=meta_for(data))
    with pytest.raises(VerificationError, match="checksum"):
        verify_remote(store, "k", sha256=hashlib.sha256(data).hexdigest(), size=len(data))


@smoke
def test_verify_remote_rejects_a_size_mismatch_and_missing_metadata():
    store, data = MemoryStore(), b"hello world"
    store.put("k", io.BytesIO(data), metadata=meta_for(data))
    with pytest.raises(VerificationError, match="size"):
        verify_remote(store, "k", sha256=hashlib.sha256(data).hexdigest(), size=len(data) + 1)
    store.put("bare", io.BytesIO(data))
    with pytest.raises(VerificationError, match="metadata"):
        verify_remote(store, "bare", sha256=hashlib.sha256(data).hexdigest(), size=len(data))


@smoke
def test_content_verification_catches_bytes_the_metadata_does_not_describe():
    store, data = CorruptingStore(), b"hello world, hello world"
    store.put("k", io.BytesIO(data), metadata=meta_for(data))
    digest = hashlib.sha256(data).hexdigest()
    verify_remote(store, "k", sha256=digest, size=len(data))  # the metadata alone cannot tell
    with pytest.raises(VerificationError, match="content"):
        verify_remote(store, "k", sha256=digest, size=len(data), content=True)


@smoke
def test_download_resumes_after_a_transient_mid_stream_error_from_the_offset_reached(tmp_path):
    data = os.urandom(5 * CHUNK)
    store = BreakingReadStore(fail_after=2 * CHUNK + 7, error=TransientError("reset"), breaks=2)
    store.put("k", io.BytesIO(data))
    retry, sleeps = policy()
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, len(data))
        sha, count = download_to_fd(store, "k", fd, size=len(data), chunk_size=CHUNK, retry=retry)
    finally:
        os.close(fd)
    assert (sha, count) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (tmp_path / "out").read_bytes() == data
    assert store.opened_at[0] == 0 and store.opened_at[1] > 0 and len(sleeps.calls) == 2


@smoke
def test_download_fails_on_a_permanent_mid_stream_error(tmp_path):
    store = BreakingReadStore(fail_after=CHUNK)
    store.put("k", io.BytesIO(os.urandom(3 * CHUNK)))
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(DriverError):
            download_to_fd(store, "k", fd, size=3 * CHUNK, chunk_size=CHUNK, retry=policy()[0])
    finally:
        os.close(fd)


@smoke
def test_download_never_writes_past_the_expected_size(tmp_path):
    store = MemoryStore()
    store.put("k", io.BytesIO(b"x" * (3 * CHUNK)))
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, CHUNK)
        with pytest.raises(VerificationError, match="longer"):
            download_to_fd(store, "k", fd, size=CHUNK + 1, chunk_size=CHUNK)
        assert os.fstat(fd).st_size == CHUNK
    finally:
        os.close(fd)


@smoke
def test_download_compares_the_resident_prefix_instead_of_overwriting_it(tmp_path):
    store = MemoryStore()
    store.put("k", io.BytesIO(b"REMOTE-HEAD" + b"tail"))
    path = tmp_path / "stub"
    path.write_bytes(b"LOCAL--HEAD" + b"\0" * 4)
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(VerificationError, match="prefix"):
            download_to_fd(store, "k", fd, size=15, keep_prefix=11)
    finally:
        os.close(fd)
    assert path.read_bytes().startswith(b"LOCAL--HEAD")


@smoke
def test_download_leaves_zero_ranges_as_holes_when_told_they_are_holes(tmp_path):
    store = MemoryStore()
    data = b"\0" * (8 * CHUNK) + b"end"
    store.put("k", io.BytesIO(data))
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, len(data))
        sha, _ = download_to_fd(store, "k", fd, size=len(data), zeros_are_holes=True, chunk_size=CHUNK)
        blocks = os.fstat(fd).st_blocks
    finally:
        os.close(fd)
    assert sha == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "out").read_bytes() == data
    assert blocks * 512 <= 2 * CHUNK


def test_object_info_metadata_is_what_was_put():
    # Guards an assumption of verify_remote: stores hand back the metadata they were given.
    store = MemoryStore()
    info = store.put("k", io.BytesIO(b"x"), metadata={"hubmeta": "1"})
    assert isinstance(info, ObjectInfo) and store.head("k").metadata == {"hubmeta": "1"}
