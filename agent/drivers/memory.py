"""An in-memory object store: the test double for fast unit tests (and a reference implementation).

Thread-safe, so the transfer code's concurrent uploads can be tested against it. ``fail_next``
injects errors to test retry and failure paths without a network.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import BinaryIO

from agent.drivers.base import (
    AlreadyExists,
    CheckedReader,
    DriverError,
    ListPage,
    NotFound,
    ObjectInfo,
    ObjectStore,
    PermanentError,
    check_key,
    check_metadata,
    level_prefix,
    make_page,
    skip_for_marker,
)


class MemoryStore(ObjectStore):
    storage_type = "memory"

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}
        self._lock = threading.Lock()
        self._failures: list[DriverError] = []

    def fail_next(self, error: DriverError) -> None:
        """Make the next operation raise ``error`` (queue several to fail several)."""
        with self._lock:
            self._failures.append(error)

    def _maybe_fail(self) -> None:
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            metadata: Mapping[str, str] | None = None, if_absent: bool = False) -> ObjectInfo:
        check_key(key)
        checked = check_metadata(metadata)
        self._maybe_fail()
        data = CheckedReader(stream, size, key=key).read()
        info = ObjectInfo(key=key, size=len(data), etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
                          modified=datetime.now(UTC), metadata=checked)
        with self._lock:
            if if_absent and key in self._objects:
                raise AlreadyExists("object exists", key=key)
            self._objects[key] = (data, info)
        return info

    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        check_key(key)
        self._maybe_fail()
        with self._lock:
            if key not in self._objects:
                raise NotFound("no such object", key=key)
            data = self._objects[key][0]
        end = len(data) if length is None else min(len(data), offset + length)
        return io.BytesIO(data[offset:end])

    def head(self, key: str) -> ObjectInfo:
        check_key(key)
        self._maybe_fail()
        with self._lock:
            if key not in self._objects:
                raise NotFound("no such object", key=key)
            return self._objects[key][1]

    def list(self, prefix: str = "", *, marker: str = "", max_items: int = 1000,
             delimiter: str | None = None) -> ListPage:
        if max_items < 1:
            raise PermanentError("max_items must be at least 1")
        self._maybe_fail()
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
            infos = {k: self._objects[k][1] for k in keys}
        # Keys under one common prefix are contiguous in key order, so a prefix is added once,
        # and counts once towards max_items however many keys it stands for.
        entries: list[tuple[str, ObjectInfo | None]] = []
        for key in keys:
            common = level_prefix(key, prefix, delimiter)
            entry = common or key
            if skip_for_marker(entry, marker, prefix, delimiter) or (entries and entries[-1][0] == entry):
                continue
            if len(entries) == max_items:
                return make_page(entries, entries[-1][0])
            entries.append((entry, None if common else infos[key]))
        return make_page(entries, None)

    def delete(self, key: str) -> None:
        check_key(key)
        self._maybe_fail()
        with self._lock:
            self._objects.pop(key, None)

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        check_key(source_key)
        check_key(dest_key)
        checked = None if metadata is None else check_metadata(metadata)
        self._maybe_fail()
        with self._lock:
            if source_key not in self._objects:
                raise NotFound("no such object", key=source_key)
            data, info = self._objects[source_key]
            new = ObjectInfo(key=dest_key, size=info.size, etag=info.etag, modified=datetime.now(UTC),
                             metadata=dict(checked if checked is not None else info.metadata))
            self._objects[dest_key] = (data, new)
        return new

    # --- for tests --------------------------------------------------------------------------
    def raw(self, key: str) -> bytes:
        with self._lock:
            return self._objects[key][0]

    def corrupt(self, key: str, data: bytes) -> None:
        """Replace an object's bytes behind the driver's back (to prove verification works)."""
        with self._lock:
            _, info = self._objects[key]
            self._objects[key] = (data, info)

