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

Keys are ``/``-separated strings without a leading ``/``. Object metadata is a flat mapping of
lower-case ASCII names to ASCII string values (the common subset of S3, Azure and GCS), used
to carry a file's identity and checksum with its object (see ``agent.hsm.metadata``).
"""

from __future__ import annotations

import abc
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
        failed upload leaves any previous object at ``key`` untouched. With ``if_absent`` the
        put fails with ``AlreadyExists`` instead of replacing an existing object.
        Raises: TransientError, PermanentError (AccessDenied, NotFound for a missing bucket,
        AlreadyExists).
        """

    @abc.abstractmethod
    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A readable stream of the object's bytes from ``offset`` (``length`` bytes, or to the end).

        The caller closes it. Raises: NotFound, AccessDenied, TransientError (also from ``read``).
        """

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size, etag, metadata of the object. Raises: NotFound, AccessDenied, TransientError."""

    @abc.abstractmethod
    def list(
        self, prefix: str = "", *, marker: str = "", max_items: int = 1000, delimiter: str | None = None
    ) -> ListPage:
        """Objects whose key starts with ``prefix`` and sorts after ``marker``, in key order.

        Raises: NotFound (missing bucket), AccessDenied, TransientError.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object. Deleting a missing object is not an error (tasks may run twice).

        Raises: AccessDenied, TransientError.
        """

    @abc.abstractmethod
    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Server-side copy; ``metadata`` replaces the source's when given.

        Raises: NotFound (source), AccessDenied, TransientError.
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

    def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing to release
        """Release connections held by the driver."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
