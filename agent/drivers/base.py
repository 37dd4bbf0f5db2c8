"""The object-store driver interface every remote target implements, and its error hierarchy.

One small interface (Rucio's protocol class is the model): stream in, stream out, head, list,
delete, copy. Each backend (S3, Azure Blob, GCS, a POSIX folder, memory) implements it once in
its own module, maps its SDK's errors to the hierarchy below at the boundary, and is run through
the same contract test suite (``tests/agent/driver_contract.py``).

Errors tell the caller what to do next:

* ``TransientError`` - the operation may succeed if retried (timeouts, throttling, 5xx, broken
  connections). Callers retry with backoff, then fail the path.
* ``PermanentError`` - retrying will not help (bad credentials, missing bucket, invalid key).
  ``NotFound`` and ``AccessDenied`` are the common cases and have their own classes.

Keys are ``/``-separated strings without a leading ``/``, at most 1024 bytes of UTF-8, without
NUL or other control characters (``check_key``). Drivers that map keys to paths (the folder
target) refuse more: ``.``/``..`` segments, empty segments, a trailing ``/``.

Object metadata is a flat mapping of names matching ``[a-z][a-z0-9_]*`` to printable ASCII
values without leading or trailing blanks, at most 2 KiB of names and values in all
(``check_metadata``): the common subset of S3 (header-safe names, 2 KB in all), Azure (C#
identifiers, so no ``-``; 8 KiB) and GCS (8 KiB), used to carry a file's identity
and checksum with its object (see ``agent.hsm.metadata``). Every driver refuses anything else
with ``PermanentError`` rather than storing something another backend could not read back.

Listing order is the order of the keys' code points (the same as their UTF-8 bytes, which is
what S3, Azure and GCS sort by). ``marker`` is exclusive; with a ``delimiter``, a marker that is
one of the listing's common prefixes (as returned in ``next_marker``) also skips every key under
that prefix, so a "directory" never appears twice across pages (``skip_for_marker``).

Memory: ``put`` and ``open_read`` stream. A driver holds at most a few parts/blocks/chunks of an
object in memory at once (its part size times its upload concurrency, documented per driver),
whatever the object's size.
"""

from __future__ import annotations

import abc
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, ClassVar

DEFAULT_CHUNK = 8 * 1024 * 1024


class DriverError(Exception):
    """Base of every error a driver raises. ``key`` names the object when there is one."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class TransientError(DriverError):
    """Worth retrying: the store was busy, slow or unreachable."""


class PermanentError(DriverError):
    """Not worth retrying: the request itself cannot succeed as it is."""


class NotFound(PermanentError):
    """The object (or the bucket/container/folder) does not exist."""


class AccessDenied(PermanentError):
    """The credentials are missing, wrong, or lack the permission."""


class AlreadyExists(PermanentError):
    """``put(..., if_absent=True)`` found an object at the key."""


@dataclass(frozen=True)
class ObjectInfo:
    """What ``head`` and ``list`` say about an object."""

    key: str
    size: int
    etag: str | None = None
    modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None
    #: Set only by ``put``, when the store proved while storing that it holds exactly the bytes
    #: read from the stream (``size``) with exactly the ``metadata`` given - e.g. S3 answering a
    #: single PutObject with the MD5 of what it received as the ETag, equal to the MD5 of what was
    #: sent. Callers may then skip the ``head`` that would verify the same (``transfer.verify_remote``).
    verified: bool = False


@dataclass(frozen=True)
class ListPage:
    """One page of a listing. ``next_marker`` is None on the last page.

    With a ``delimiter``, ``prefixes`` holds the "directories" directly under the prefix (each
    ending with the delimiter) and ``objects`` only the objects at that level.
    """

    objects: list[ObjectInfo]
    prefixes: list[str]
    next_marker: str | None


class ObjectStore(abc.ABC):
    """A bucket, container or folder holding objects. Instances are not shared between threads
    unless the implementation says so; create one per worker thread or process.
    """

    #: The ``storage_type`` this driver serves (``s3``, ``azure``, ``gcs``, ``fs``, ``memory``).
    storage_type: ClassVar[str]

    @abc.abstractmethod
    def put(
        self,
        key: str,
        stream: BinaryIO,
        *,
        size: int | None = None,
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> ObjectInfo:
        """Store ``stream``'s bytes (read to EOF, in bounded memory) at ``key``.

        The object appears whole or not at all: a reader never sees a partial upload, and a
        failed upload (an error from the store, or an exception raised by ``stream.read``, which
        propagates unchanged) leaves any previous object at ``key`` untouched. ``size``, when
        given, is checked: a stream that ends early or runs past it fails the put with
        ``PermanentError`` before anything is committed (the source changed while it was read).
        With ``if_absent`` the put fails with ``AlreadyExists`` instead of replacing an existing
        object (atomically where the store supports conditional writes; each driver documents
        where it can only check first).
        Raises: TransientError, PermanentError (AccessDenied, NotFound for a missing bucket,
        AlreadyExists, a bad key or metadata).
        """

    @abc.abstractmethod
    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A readable stream of the object's bytes from ``offset`` (``length`` bytes, or to the end).

        An ``offset`` at or past the end gives an empty stream. A missing object raises here, not
        on the first ``read``. The caller closes it. Raises: NotFound, AccessDenied,
        TransientError (also from ``read``).
        """

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size, etag, metadata of the object. Raises: NotFound, AccessDenied, TransientError."""

    @abc.abstractmethod
    def list(
        self, prefix: str = "", *, marker: str = "", max_items: int = 1000, delimiter: str | None = None
    ) -> ListPage:
        """Objects whose key starts with ``prefix`` and sorts after ``marker``, in key order.

        At most ``max_items`` entries (objects plus prefixes) per page. ``next_marker`` is the
        last entry of the page (a key, or a common prefix) when more entries follow, and None
        when this page is the last; pass it back as ``marker`` for the next page (see the module
        docstring for markers that are common prefixes). Listed ``ObjectInfo`` may leave
        ``metadata`` empty (S3 does not list it): use ``head`` for an object's metadata.
        Raises: NotFound (missing bucket), AccessDenied, TransientError.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object. Deleting a missing object is not an error (tasks may run twice).

        Raises: AccessDenied, TransientError.
        """

    @abc.abstractmethod
    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Server-side copy; ``metadata`` replaces the source's when given (``{}`` clears it).

        Replaces any object at ``dest_key``. Raises: NotFound (source), AccessDenied,
        TransientError.
        """

    def iter_read(self, key: str, *, offset: int = 0, length: int | None = None,
                  chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        """The object's bytes in chunks of at most ``chunk_size`` (bounded memory)."""
        stream = self.open_read(key, offset=offset, length=length)
        try:
            while chunk := stream.read(chunk_size):
                yield chunk
        finally:
            stream.close()

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except NotFound:
            return False
        return True

    def upload_part_size(self, size: int) -> int | None:
        """The part size of an upload of ``size`` bytes when the store sends it in several parts
        (multipart), else None. The agent then records a composite checksum over parts of that
        size (``agent.hsm.metadata``), hashed on several cores before the upload starts."""
        return None

    def defer_durability(self) -> bool:
        """Let ``put`` return before its object is durable, until ``flush``; True if the store
        does so from now on (the folder target), False if its puts stay durable at return (cloud
        stores). A caller must not record anything that relies on an object put since until
        ``flush`` returned. Meant for a store instance owned by one batch."""
        return False

    def flush(self) -> None:  # noqa: B027 - optional hook, most stores are durable at put's return
        """Make every object stored so far by this instance durable (see ``defer_durability``).
        A no-op for stores whose ``put`` returns only once the object is durable. Raises
        DriverError."""

    def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing to release
        """Release connections held by the driver."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- helpers for implementations --------------------------------------------------------------

MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048  # S3's limit for user metadata (names and values), the smallest of the three
_METADATA_NAME = re.compile(r"[a-z][a-z0-9_]*")
_METADATA_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_key(key: str) -> str:
    """Return ``key`` if every backend can store it, else raise ``PermanentError``."""
    if not isinstance(key, str) or not key:
        raise PermanentError("an object key must be a non-empty string", key=None)
    if key.startswith("/"):
        raise PermanentError("an object key must not start with '/'", key=key)
    if _CONTROL.search(key):
        raise PermanentError("an object key must not contain NUL or control characters", key=None)
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise PermanentError("an object key must be valid Unicode text", key=None) from None
    if len(encoded) > MAX_KEY_BYTES:
        raise PermanentError(f"an object key must be at most {MAX_KEY_BYTES} bytes of UTF-8", key=key)
    return key


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """A plain copy of ``metadata`` if it is in the common subset (see the module docstring)."""
    checked: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name):
            raise PermanentError(f"metadata name {name!r} must match [a-z][a-z0-9_]*")
        if not isinstance(value, str) or not (value == "" or _METADATA_VALUE.fullmatch(value)):
            raise PermanentError(
                f"metadata {name!r} must be printable ASCII without leading or trailing blanks"
            )
        checked[name] = value
    if sum(len(name) + len(value) for name, value in checked.items()) > MAX_METADATA_BYTES:
        raise PermanentError(f"metadata must be at most {MAX_METADATA_BYTES} bytes of names and values")
    return checked


def level_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    """The common prefix ``key`` rolls up into when listing ``prefix`` with ``delimiter``, or None."""
    if not delimiter:
        return None
    cut = key.find(delimiter, len(prefix))
    return None if cut < 0 else key[: cut + len(delimiter)]


def skip_for_marker(entry: str, marker: str, prefix: str, delimiter: str | None) -> bool:
    """Whether a listing entry (a key or a common prefix) belongs before or at ``marker``.

    Entries up to and including the marker are skipped; when the marker is itself a common
    prefix of this listing, so is everything under it (the next page resumes after the
    "directory" instead of repeating it).
    """
    if entry <= marker:
        return True
    return bool(marker) and level_prefix(marker, prefix, delimiter) == marker and entry.startswith(marker)


class CheckedReader(io.RawIOBase):
    """A read-only view of a caller's stream for uploads: full reads, an exact size, a count.

    ``read(n)`` returns ``n`` bytes unless the stream ends (SDKs take a short read for the end).
    With ``size`` the stream must hold exactly that many bytes: the read that would go past it,
    or the end of the stream before it, raises ``PermanentError`` while the upload is still in
    flight, so nothing is committed. At ``size`` bytes it checks that the stream ends there
    (one extra ``read(1)``). Never seekable, so SDKs take their streaming paths (``tell`` works).
    """

    def __init__(self, stream: BinaryIO, size: int | None = None, *, key: str | None = None) -> None:
        super().__init__()
        self._stream = stream
        self._size = size
        self._key = key
        self.count = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """Bytes handed out so far (some SDKs check a stream's position before they start)."""
        return self.count

    def _more(self, n: int) -> bytes:
        chunk = self._stream.read(n)
        if chunk is None:  # a non-blocking source with nothing ready: wait for it
            chunk = b""
        return bytes(chunk)

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return self.readall()
        if self._eof or n == 0:
            return b""
        if self._size is not None:
            n = min(n, self._size - self.count)
            if n == 0:
                self._finish()
                return b""
        parts: list[bytes] = []
        wanted = n
        while wanted > 0:
            chunk = self._more(wanted)
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            wanted -= len(chunk)
        data = b"".join(parts)
        self.count += len(data)
        if self._size is not None:
            if self._eof and self.count < self._size:
                raise PermanentError(
                    f"the stream ended after {self.count} bytes, {self._size} were declared", key=self._key
                )
            if self.count == self._size:
                self._finish()
        return data

    def _finish(self) -> None:
        if not self._eof:
            if self._more(1):
                raise PermanentError(
                    f"the stream holds more than the {self._size} bytes declared", key=self._key
                )
            self._eof = True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def as_bool(value: object, default: bool) -> bool:
    """A flag from ``advanced_settings``, which may arrive as JSON true/false or as text."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise PermanentError(f"expected a true/false setting, got {value!r}")


def as_int(value: object, default: int, *, minimum: int = 0) -> int:
    """A number from ``advanced_settings`` (JSON number or text), at least ``minimum``."""
    if value is None or value == "":
        return default
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise PermanentError(f"expected a whole number setting, got {value!r}") from None
    if number < minimum:
        raise PermanentError(f"expected a setting of at least {minimum}, got {number}")
    return number


def make_page(entries: list[tuple[str, ObjectInfo | None]], next_marker: str | None) -> ListPage:
    """A ``ListPage`` from entries in key order: ``(key, info)`` for objects, ``(prefix, None)``."""
    return ListPage(objects=[info for _, info in entries if info is not None],
                    prefixes=[entry for entry, info in entries if info is None], next_marker=next_marker)
