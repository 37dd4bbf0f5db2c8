"""Moving bytes between a local file and an object store, with checksums, retries and cancel checks.

The HSM operations (``agent.drivers.posix``) decide *what* may happen to a file; this module makes
each byte movement verifiable:

* uploads stream from a file descriptor with ``pread`` in chunks (bounded memory) and hash
  exactly the bytes handed to the store, so the checksum describes what was uploaded rather than
  what the file holds later;
* ``verify_remote`` checks the store's view (size from ``head``, the SHA-256 carried in the
  object's metadata) and, on request, re-reads the object and hashes it;
* downloads write with ``pwrite`` at absolute offsets while hashing, resume from the last good
  offset after a transient error (the running hash already covers the bytes before it), and never
  write past the expected size;
* only ``TransientError`` is retried, with exponential backoff; anything else fails the path;
* ``should_cancel`` is called between chunks and raises ``Cancelled``: cancel is cooperative.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from agent.drivers.base import DEFAULT_CHUNK, ObjectInfo, ObjectStore, PermanentError, TransientError
from agent.hsm.metadata import MetadataError, parse_metadata

T = TypeVar("T")

#: ``progress(done_bytes, total_bytes_or_None)``, called after each chunk.
ProgressFn = Callable[[int, int | None], None]
#: Returns True when the caller wants the operation stopped.
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """The cancel check asked to stop. Raised between chunks, before anything is committed."""


class VerificationError(PermanentError):
    """The remote copy does not match the bytes that were read (or the expected checksum)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for ``TransientError``: ``attempts`` tries in all, delays growing by ``factor``."""

    attempts: int = 5
    initial_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int) -> float:
        """Delay after failed ``attempt`` (1-based), with jitter so agents do not retry in step."""
        base = min(self.max_delay, self.initial_delay * self.factor ** (attempt - 1))
        return base * random.uniform(0.8, 1.0)


NO_RETRY = RetryPolicy(attempts=1)


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Call ``fn``; on ``TransientError`` wait and retry up to ``policy.attempts`` tries in all."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except TransientError:
            if attempt >= policy.attempts:
                raise
            policy.sleep(policy.delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def check_cancel(should_cancel: CancelFn | None) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled("cancelled")


def read_all(fd: int, *, limit: int) -> bytes:
    """Read a small file whole (at most ``limit`` bytes; the caller checked its size)."""
    parts: list[bytes] = []
    offset = 0
    while offset <= limit:
        chunk = os.pread(fd, limit + 1 - offset, offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def hash_fd(fd: int, *, chunk_size: int = DEFAULT_CHUNK, should_cancel: CancelFn | None = None) -> tuple[str, int]:
    """SHA-256 and length of the file's bytes from offset 0 to EOF, read in chunks."""
    digest = hashlib.sha256()
    offset = 0
    while True:
        check_cancel(should_cancel)
        chunk = os.pread(fd, chunk_size, offset)
        if not chunk:
            return digest.hexdigest(), offset
        digest.update(chunk)
        offset += len(chunk)


class HashingFileReader(io.RawIOBase):
    """A read-only, non-seekable stream over a file descriptor that hashes what it returns.

    Not seekable on purpose: a driver that could rewind and re-read would upload bytes the hash
    never saw. ``pread`` keeps the descriptor's own offset out of it. A read for "everything"
    still proceeds chunk by chunk so progress and cancel checks happen during it.
    """

    def __init__(self, fd: int, *, total: int | None, chunk_size: int = DEFAULT_CHUNK,
                 progress: ProgressFn | None = None, should_cancel: CancelFn | None = None) -> None:
        super().__init__()
        self._fd = fd
        self._total = total
        self._chunk = chunk_size
        self._progress = progress
        self._should_cancel = should_cancel
        self._digest = hashlib.sha256()
        self.bytes_read = 0
        self.cancelled = False

    def readable(self) -> bool:
        return True

    def _next(self, size: int) -> bytes:
        if self._should_cancel is not None and self._should_cancel():
            self.cancelled = True
            raise Cancelled("cancelled")
        chunk = os.pread(self._fd, size, self.bytes_read)
        if chunk:
            self._digest.update(chunk)
            self.bytes_read += len(chunk)
            if self._progress is not None:
                self._progress(self.bytes_read, self._total)
        return chunk

    def read(self, size: int | None = -1) -> bytes:
        parts: list[bytes] = []
        wanted = -1 if size is None or size < 0 else size
        got = 0
        while wanted < 0 or got < wanted:
            step = self._chunk if wanted < 0 else min(self._chunk, wanted - got)
            chunk = self._next(step)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._next(min(len(buffer), self._chunk))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def sha256(self) -> str:
        return self._digest.hexdigest()


@dataclass(frozen=True)
class Uploaded:
    """What the store answered and what exactly was sent to it."""

    info: ObjectInfo
    sha256: str
    size: int


def upload_fd(store: ObjectStore, key: str, fd: int, *, size: int, metadata: dict[str, str],
              if_absent: bool = False, chunk_size: int = DEFAULT_CHUNK, progress: ProgressFn | None = None,
              should_cancel: CancelFn | None = None, retry: RetryPolicy = NO_RETRY) -> Uploaded:
    """Stream the file behind ``fd`` to ``key``; each retry starts again from byte 0."""

    def attempt() -> Uploaded:
        reader = HashingFileReader(fd, total=size, chunk_size=chunk_size, progress=progress,
                                   should_cancel=should_cancel)
        try:
            info = store.put(key, reader, size=size, metadata=metadata, if_absent=if_absent)
        except Exception as exc:
            # A driver may wrap the exception our reader raised; cancel must stay cancel.
            if reader.cancelled and not isinstance(exc, Cancelled):
                raise Cancelled("cancelled") from exc
            raise
        return Uploaded(info, reader.sha256(), reader.bytes_read)

    return call_with_retries(attempt, retry)


def upload_bytes(store: ObjectStore, key: str, data: bytes, *, metadata: dict[str, str], if_absent: bool = False,
                 progress: ProgressFn | None = None, should_cancel: CancelFn | None = None,
                 retry: RetryPolicy = NO_RETRY) -> Uploaded:
    """Upload a small file already read into memory (one local read instead of two)."""
    digest = hashlib.sha256(data).hexdigest()

    def attempt() -> Uploaded:
        check_cancel(should_cancel)
        info = store.put(key, io.BytesIO(data), size=len(data), metadata=metadata, if_absent=if_absent)
        if progress is not None:
            progress(len(data), len(data))
        return Uploaded(info, digest, len(data))

    return call_with_retries(attempt, retry)


def iter_object(store: ObjectStore, key: str, *, chunk_size: int = DEFAULT_CHUNK,
                should_cancel: CancelFn | None = None, retry: RetryPolicy = NO_RETRY) -> Iterator[bytes]:
    """The object's bytes in chunks; a transient error mid-stream resumes at the offset reached.

    The retry budget is per stall: it resets whenever a chunk arrives, so a long download over a
    flaky link is not failed by errors spread across hours.
    """
    offset = 0
    failures = 0
    while True:
        try:
            stream = store.open_read(key, offset=offset)
            try:
                while True:
                    check_cancel(should_cancel)
                    chunk = stream.read(chunk_size)
                    if not chunk:
                        return
                    failures = 0
                    offset += len(chunk)
                    yield chunk
            finally:
                stream.close()
        except TransientError:
            failures += 1
            if failures >= retry.attempts:
                raise
            retry.sleep(retry.delay(failures))


def verify_remote(store: ObjectStore, key: str, *, sha256: str, size: int, content: bool = False,
                  chunk_size: int = DEFAULT_CHUNK, should_cancel: CancelFn | None = None,
                  retry: RetryPolicy = NO_RETRY) -> ObjectInfo:
    """Prove the object at ``key`` holds ``size`` bytes with SHA-256 ``sha256``.

    Always: the store's size and the checksum in the object's metadata. With ``content``, also
    read the object back and hash it, which catches a store that kept different bytes than the
    metadata claims (at the cost of downloading it). Raises ``VerificationError``.
    """
    info = call_with_retries(lambda: store.head(key), retry)
    if info.size != size:
        raise VerificationError(f"remote size {info.size} differs from the {size} bytes read", key=key)
    try:
        meta = parse_metadata(info.metadata)
    except MetadataError as exc:
        raise VerificationError(f"remote metadata unusable: {exc}", key=key) from None
    if meta.sha256 != sha256 or meta.size != size:
        raise VerificationError("remote checksum in metadata differs from the bytes read", key=key)
    if content:
        digest = hashlib.sha256()
        count = 0
        for chunk in iter_object(store, key, chunk_size=chunk_size, should_cancel=should_cancel, retry=retry):
            digest.update(chunk)
            count += len(chunk)
        if count != size or digest.hexdigest() != sha256:
            raise VerificationError("remote content does not hash to the bytes read", key=key)
    return info


def _all_zero(data: bytes) -> bool:
    """Whether every byte is zero. Data chunks almost never start and end with zero, so they are
    told apart by two bytes instead of a count over the whole chunk (measured: the count alone
    cost 13% of a large recall); a chunk of a hole still gets the full count."""
    return data[0] == 0 and data[-1] == 0 and data.count(0) == len(data)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def download_to_fd(store: ObjectStore, key: str, fd: int, *, size: int, keep_prefix: int = 0,
                   zeros_are_holes: bool = False, chunk_size: int = DEFAULT_CHUNK,
                   progress: ProgressFn | None = None, should_cancel: CancelFn | None = None,
                   retry: RetryPolicy = NO_RETRY) -> tuple[str, int]:
    """Write the object into ``fd`` at its offsets while hashing it; return (sha256, length).

    ``keep_prefix`` bytes already in the file (a stub's resident head) are compared, not written,
    so a bad remote copy cannot damage them. With ``zeros_are_holes`` the caller guarantees the
    region is already zero (freshly punched), so all-zero chunks are skipped and sparse files stay
    sparse. Never writes at or past ``size``: a longer object fails instead of growing the file.
    The caller verifies the returned checksum before marking anything resident.
    """
    digest = hashlib.sha256()
    offset = 0
    for chunk in iter_object(store, key, chunk_size=chunk_size, should_cancel=should_cancel, retry=retry):
        end = offset + len(chunk)
        if end > size:
            raise VerificationError(f"object is longer than the expected {size} bytes", key=key)
        digest.update(chunk)
        if offset < keep_prefix:
            split = min(keep_prefix, end) - offset
            if os.pread(fd, split, offset) != chunk[:split]:
                raise VerificationError("remote bytes differ from the stub's resident prefix", key=key)
            payload = chunk[split:]
            write_at = offset + split
        else:
            payload = chunk
            write_at = offset
        if payload and not (zeros_are_holes and _all_zero(payload)):
            _pwrite_all(fd, payload, write_at)
        offset = end
        if progress is not None:
            progress(offset, size)
    return digest.hexdigest(), offset
