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

from agent.drivers.base import AlreadyExists, DriverError, ListPage, NotFound, ObjectInfo, ObjectStore


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
        self._maybe_fail()
        data = stream.read()
        info = ObjectInfo(key=key, size=len(data), etag=hashlib.md5(data, usedforsecurity=False).hexdigest(),
                          modified=datetime.now(UTC), metadata=dict(metadata or {}))
        with self._lock:
            if if_absent and key in self._objects:
                raise AlreadyExists("object exists", key=key)
            self._objects[key] = (data, info)
        return info

    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        self._maybe_fail()
        with self._lock:
            if key not in self._objects:
                raise NotFound("no such object", key=key)
            data = self._objects[key][0]
        end = len(data) if length is None else min(len(data), offset + length)
        return io.BytesIO(data[offset:end])

    def head(self, key: str) -> ObjectInfo:
        self._maybe_fail()
        with self._lock:
            if key not in self._objects:
                raise NotFound("no such object", key=key)
            return self._objects[key][1]

    def list(self, prefix: str = "", *, marker: str = "", max_items: int = 1000,
             delimiter: str | None = None) -> ListPage:
        self._maybe_fail()
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix) and k > marker)
            infos = {k: self._objects[k][1] for k in keys}
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last = None
        for key in keys:
            if len(objects) + len(prefixes) >= max_items:
                return ListPage(objects, prefixes, last)
            if delimiter:
                rest = key[len(prefix):]
                if delimiter in rest:
                    common = prefix + rest.split(delimiter, 1)[0] + delimiter
                    if not prefixes or prefixes[-1] != common:
                        prefixes.append(common)
                    last = key
                    continue
            objects.append(infos[key])
            last = key
        return ListPage(objects, prefixes, None)

    def delete(self, key: str) -> None:
        self._maybe_fail()
        with self._lock:
            self._objects.pop(key, None)

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        self._maybe_fail()
        with self._lock:
            if source_key not in self._objects:
                raise NotFound("no such object", key=source_key)
            data, info = self._objects[source_key]
            new = ObjectInfo(key=dest_key, size=info.size, etag=info.etag, modified=datetime.now(UTC),
                             metadata=dict(metadata if metadata is not None else info.metadata))
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
