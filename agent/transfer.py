"""Moving bytes between a local file and an object store, with checksums, retries and cancel checks.

The HSM operations (``agent.drivers.posix``) decide *what* may happen to a file; this module makes
each byte movement verifiable:

* uploads stream from a file descriptor with ``pread`` in chunks (bounded memory) and hash
  exactly the bytes handed to the store, so the checksum describes what was uploaded rather than
  what the file holds later;
* checksums are SHA-256, plain or *composite* (``Checksum``): for an upload in several parts, the
  SHA-256 of the concatenated per-part SHA-256 digests, which ``checksum_fd`` computes on several
  cores before the upload starts (the object's metadata, sent first, must carry it); the upload
  then compares each part's digest as the part is handed to the store and fails the upload -
  before anything is committed - at the first part that differs;
* ``verify_remote`` checks the store's view (size from ``head``, the checksum carried in the
  object's metadata) and, on request, re-reads the object and hashes it; a put whose store proved
  at once what it stored (``ObjectInfo.verified``) needs no ``head``;
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
from collections.abc import Callable, Iterator, Sequence
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


class SourceChanged(PermanentError):
    """A part read for the upload differs from the same part hashed before the upload started:
    the file changed under us. Raised from the upload's stream, so the store commits nothing -
    unless ``committed``: found only after the store returned (a store that stopped reading at
    the declared size), the object must then be discarded."""

    committed = False


#: Threads hashing the parts of a composite checksum: hashlib releases the GIL on large buffers,
#: so two threads use both cores of a small node; more rarely help (the disk becomes the limit).
HASH_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: Bytes hashed per ``update`` call inside a part (bounded memory per hashing thread).
_HASH_READ = 4 * 1024 * 1024


class Checksum:
    """Incremental SHA-256: plain, or composite over ``part_size``-byte parts (the SHA-256 of the
    concatenated raw digests of the parts, the last one possibly short; see ``agent.hsm.metadata``).

    ``on_part(index, digest)`` is called as each part completes (also the short last one, from
    ``hexdigest``), which lets an upload compare parts as they go.
    """

    def __init__(self, part_size: int | None = None, *,
                 on_part: Callable[[int, bytes], None] | None = None) -> None:
        if part_size is not None and part_size < 1:
            raise ValueError("part_size must be positive")
        self.part_size = part_size
        self._on_part = on_part
        self._hash = hashlib.sha256()  # the plain hash, or the outer hash of a composite
        self._part = hashlib.sha256()
        self._in_part = 0
        self._parts = 0
        self._final: str | None = None

    def update(self, data: bytes | memoryview) -> None:
        if self._final is not None:
            raise ValueError("checksum already finished")
        if self.part_size is None:
            self._hash.update(data)
            return
        view = memoryview(data)
        while view:
            take = view[: self.part_size - self._in_part]
            self._part.update(take)
            self._in_part += len(take)
            view = view[len(take):]
            if self._in_part == self.part_size:
                self._close_part()

    def _close_part(self) -> None:
        digest = self._part.digest()
        self._hash.update(digest)
        if self._on_part is not None:
            self._on_part(self._parts, digest)
        self._parts += 1
        self._part = hashlib.sha256()
        self._in_part = 0

    def finish(self) -> str:
        """Close the last (short) part, calling ``on_part`` for it; no ``update`` may follow."""
        if self._final is None:
            if self.part_size is not None and self._in_part:
                self._close_part()
            self._final = self._hash.hexdigest()
        return self._final

    def hexdigest(self) -> str:
        """The checksum of everything given so far (more may follow; ``finish`` ends it)."""
        if self._final is not None:
            return self._final
        if self.part_size is None or not self._in_part:
            return self._hash.hexdigest()
        outer = self._hash.copy()
        outer.update(self._part.digest())
        return outer.hexdigest()


def composite_of(part_digests: Sequence[bytes]) -> str:
    """The composite checksum of parts whose SHA-256 digests are given, in order."""
    outer = hashlib.sha256()
    for digest in part_digests:
        outer.update(digest)
    return outer.hexdigest()


def checksum_bytes(data: bytes, part_size: int | None = None) -> str:
    """The checksum (plain, or composite over ``part_size`` parts) of ``data``."""
    checksum = Checksum(part_size)
    checksum.update(data)
    return checksum.finish()


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
        want = limit + 1 - offset
        chunk = os.pread(fd, want, offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
        if len(chunk) < want:  # a regular file reads short only at its end: no second call to see it
            break
    return b"".join(parts)


@dataclass(frozen=True)
class FileChecksum:
    """A file's checksum as ``checksum_fd`` read it: ``parts`` holds the per-part digests of a
    composite (empty for a plain SHA-256); ``size`` is the number of bytes hashed."""

    sha256: str
    size: int
    part_size: int | None = None
    parts: tuple[bytes, ...] = ()


def checksum_fd(fd: int, *, size: int, part_size: int | None, chunk_size: int = DEFAULT_CHUNK,
                workers: int = HASH_WORKERS, should_cancel: CancelFn | None = None) -> FileChecksum:
    """The file's checksum from offset 0 to EOF; with ``part_size``, a composite whose parts are
    hashed by ``workers`` threads at once (``pread`` and ``sha256.update`` release the GIL).

    ``size`` is what the caller expects; the parts cover the bytes actually there, so a file that
    shrank or grew gives another ``FileChecksum.size`` (the caller compares it).
    """
    if part_size is None:
        sha, count = hash_fd(fd, chunk_size=chunk_size, should_cancel=should_cancel)
        return FileChecksum(sha, count)
    step = max(1, min(chunk_size, _HASH_READ, part_size))

    def one(index: int) -> tuple[bytes, int]:
        start, end = index * part_size, (index + 1) * part_size
        digest = hashlib.sha256()
        offset = start
        while offset < end:
            check_cancel(should_cancel)
            chunk = os.pread(fd, min(step, end - offset), offset)
            if not chunk:
                break
            digest.update(chunk)
            offset += len(chunk)
        return digest.digest(), offset - start

    count = (size + part_size - 1) // part_size
    if workers > 1 and count > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, count), thread_name_prefix="agent-hash") as pool:
            results = list(pool.map(one, range(count)))
    else:
        results = [one(index) for index in range(count)]
    parts: list[bytes] = []
    total = 0
    for digest, length in results:
        if length == 0:
            break  # the file shrank by whole parts: these parts do not exist
        parts.append(digest)
        total += length
        if length < part_size:
            break  # a short part ends the file (a shorter file than ``size``: the caller sees it)
    if total == size and os.pread(fd, 1, size):
        total += 1  # the file must end at ``size``: it grew since the caller's stat
    return FileChecksum(composite_of(parts), total, part_size, tuple(parts))


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
                 progress: ProgressFn | None = None, should_cancel: CancelFn | None = None,
                 part_size: int | None = None, expected_parts: Sequence[bytes] | None = None) -> None:
        super().__init__()
        self._fd = fd
        self._total = total
        self._chunk = chunk_size
        self._progress = progress
        self._should_cancel = should_cancel
        self._expected = expected_parts
        self._digest = Checksum(part_size, on_part=self._check_part if expected_parts is not None else None)
        self.bytes_read = 0
        self.cancelled = False

    def _check_part(self, index: int, digest: bytes) -> None:
        assert self._expected is not None
        if index >= len(self._expected) or self._expected[index] != digest:
            raise SourceChanged(f"part {index + 1} of the file changed after it was hashed")

    def readable(self) -> bool:
        return True

    def _next(self, size: int) -> bytes:
        if self._should_cancel is not None and self._should_cancel():
            self.cancelled = True
            raise Cancelled("cancelled")
        chunk = os.pread(self._fd, size, self.bytes_read)
        if not chunk and self._expected is not None:
            self._digest.finish()  # the end: compare the last, short part before the store commits
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
        """The checksum of the bytes handed out so far (composite with ``part_size``)."""
        return self._digest.hexdigest()

    def finish(self) -> str:
        """The checksum of everything handed out, once the store is done reading; the last part
        is compared with the expected one here if the end of the file was not read yet."""
        return self._digest.finish()


@dataclass(frozen=True)
class Uploaded:
    """What the store answered and what exactly was sent to it."""

    info: ObjectInfo
    sha256: str
    size: int


def upload_fd(store: ObjectStore, key: str, fd: int, *, size: int, metadata: dict[str, str],
              if_absent: bool = False, chunk_size: int = DEFAULT_CHUNK, progress: ProgressFn | None = None,
              should_cancel: CancelFn | None = None, retry: RetryPolicy = NO_RETRY,
              part_size: int | None = None, expected_parts: Sequence[bytes] | None = None) -> Uploaded:
    """Stream the file behind ``fd`` to ``key``; each retry starts again from byte 0.

    With ``part_size`` the returned checksum is the composite; with ``expected_parts`` (the
    digests ``checksum_fd`` computed first) every part is compared as it is handed to the store
    and a difference raises ``SourceChanged`` from the stream, so the upload commits nothing.
    """

    def attempt() -> Uploaded:
        reader = HashingFileReader(fd, total=size, chunk_size=chunk_size, progress=progress,
                                   should_cancel=should_cancel, part_size=part_size,
                                   expected_parts=expected_parts)
        try:
            info = store.put(key, reader, size=size, metadata=metadata, if_absent=if_absent)
        except Exception as exc:
            # A driver may wrap the exception our reader raised; cancel must stay cancel.
            if reader.cancelled and not isinstance(exc, Cancelled):
                raise Cancelled("cancelled") from exc
            raise
        try:
            sha = reader.finish()
        except SourceChanged as exc:
            exc.committed = True
            raise
        return Uploaded(info, sha, reader.bytes_read)

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
                  retry: RetryPolicy = NO_RETRY, part_size: int | None = None,
                  uploaded: ObjectInfo | None = None) -> ObjectInfo:
    """Prove the object at ``key`` holds ``size`` bytes with checksum ``sha256`` (plain, or the
    composite over ``part_size`` parts: the metadata must name the same format).

    Always: the store's size and the checksum in the object's metadata, from ``head`` - or from
    ``uploaded``, the put's own answer, when the store marked it ``verified`` (it proved while
    storing that it kept exactly the bytes and metadata sent, e.g. S3's MD5 ETag of a single
    PutObject; see ``ObjectInfo``). With ``content``, also read the object back and hash it,
    which catches a store that kept different bytes than the metadata claims (at the cost of
    downloading it). Raises ``VerificationError``.
    """
    if uploaded is not None and uploaded.verified and uploaded.key == key and not content:
        info = uploaded
    else:
        info = call_with_retries(lambda: store.head(key), retry)
    if info.size != size:
        raise VerificationError(f"remote size {info.size} differs from the {size} bytes read", key=key)
    try:
        meta = parse_metadata(info.metadata)
    except MetadataError as exc:
        raise VerificationError(f"remote metadata unusable: {exc}", key=key) from None
    if meta.sha256 != sha256 or meta.size != size or meta.part_size != part_size:
        raise VerificationError("remote checksum in metadata differs from the bytes read", key=key)
    if content:
        digest = Checksum(part_size)
        count = 0
        for chunk in iter_object(store, key, chunk_size=chunk_size, should_cancel=should_cancel, retry=retry):
            digest.update(chunk)
            count += len(chunk)
        if count != size or digest.finish() != sha256:
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
                   retry: RetryPolicy = NO_RETRY, part_size: int | None = None) -> tuple[str, int]:
    """Write the object into ``fd`` at its offsets while hashing it; return (checksum, length),
    the checksum composite over ``part_size`` parts when given (the record's format).

    ``keep_prefix`` bytes already in the file (a stub's resident head) are compared, not written,
    so a bad remote copy cannot damage them. With ``zeros_are_holes`` the caller guarantees the
    region is already zero (freshly punched), so all-zero chunks are skipped and sparse files stay
    sparse. Never writes at or past ``size``: a longer object fails instead of growing the file.
    The caller verifies the returned checksum before marking anything resident.
    """
    digest = Checksum(part_size)
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
    return digest.finish(), offset
