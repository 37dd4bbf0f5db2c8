"""Helpers for the HSM and data-safety tests: stores that misbehave on purpose, a disk-backed store
that several processes can share (for SIGKILL tests), file builders and SHA-256 manifests.

Also a small command-line runner (``python -m tests.agent.hsm_fixtures``) that performs one
migrate or recall in a separate process, so a test can SIGKILL a real agent process mid-way.
It imports neither Django nor pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import signal
import stat
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from agent.drivers.base import (
    AlreadyExists,
    ListPage,
    NotFound,
    ObjectInfo,
    ObjectStore,
    PermanentError,
    TransientError,
)
from agent.drivers.memory import MemoryStore

MiB = 1024 * 1024


# --- stores ----------------------------------------------------------------------------------------

class DirStore(ObjectStore):
    """Objects as files under a directory, shared between processes. Streaming (bounded memory)
    and atomic: the data is written to a temporary file, and the object appears only when its
    metadata file is linked into place."""

    storage_type = "dirstore"

    def __init__(self, root: str | os.PathLike[str], name: str = "dirstore", read_size: int = 256 * 1024) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.read_size = read_size

    def _meta_path(self, key: str) -> Path:
        return self.root / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def _load(self, key: str) -> dict:
        try:
            return json.loads(self._meta_path(key).read_text())
        except FileNotFoundError:
            raise NotFound("no such object", key=key) from None

    def _info(self, doc: dict) -> ObjectInfo:
        return ObjectInfo(key=doc["key"], size=doc["size"], etag=doc["etag"], metadata=doc["metadata"],
                          modified=datetime.fromtimestamp(doc["modified"], UTC))

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            metadata: Mapping[str, str] | None = None, if_absent: bool = False) -> ObjectInfo:
        data_name = f"{uuid.uuid4().hex}.data"
        md5 = hashlib.md5(usedforsecurity=False)
        count = 0
        with open(self.root / data_name, "wb") as out:
            while chunk := stream.read(self.read_size):
                out.write(chunk)
                md5.update(chunk)
                count += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        doc = {"key": key, "size": count, "etag": md5.hexdigest(), "metadata": dict(metadata or {}),
               "data": data_name, "modified": time.time()}
        tmp = self.root / f".{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(doc))
        target = self._meta_path(key)
        old = None
        if if_absent:
            try:
                os.link(tmp, target)
            except FileExistsError:
                os.unlink(tmp)
                os.unlink(self.root / data_name)
                raise AlreadyExists("object exists", key=key) from None
            os.unlink(tmp)
        else:
            try:
                old = json.loads(target.read_text())["data"]
            except FileNotFoundError:
                pass
            os.replace(tmp, target)
        if old:
            (self.root / old).unlink(missing_ok=True)
        return self._info(doc)

    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        doc = self._load(key)
        fh = open(self.root / doc["data"], "rb")  # noqa: SIM115 - the caller closes it
        fh.seek(offset)
        if length is None:
            return fh
        data = fh.read(length)
        fh.close()
        return io.BytesIO(data)

    def head(self, key: str) -> ObjectInfo:
        return self._info(self._load(key))

    def list(self, prefix: str = "", *, marker: str = "", max_items: int = 1000,
             delimiter: str | None = None) -> ListPage:
        docs = []
        for meta in self.root.glob("*.json"):
            doc = json.loads(meta.read_text())
            if doc["key"].startswith(prefix) and doc["key"] > marker:
                docs.append(doc)
        docs.sort(key=lambda d: d["key"])
        page = docs[:max_items]
        more = page[-1]["key"] if len(docs) > max_items else None
        return ListPage([self._info(d) for d in page], [], more)

    def delete(self, key: str) -> None:
        try:
            doc = self._load(key)
        except NotFound:
            return
        self._meta_path(key).unlink(missing_ok=True)
        (self.root / doc["data"]).unlink(missing_ok=True)

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        doc = self._load(source_key)
        with open(self.root / doc["data"], "rb") as fh:
            return self.put(dest_key, fh, metadata=metadata if metadata is not None else doc["metadata"])

    def raw(self, key: str) -> bytes:
        return (self.root / self._load(key)["data"]).read_bytes()


class HeadLiesStore(MemoryStore):
    """A store whose ``head`` reports a different SHA-256 than the bytes it received."""

    def head(self, key: str) -> ObjectInfo:
        info = super().head(key)
        meta = dict(info.metadata)
        meta["hubsha256"] = "0" * 64
        return ObjectInfo(info.key, info.size, info.etag, info.modified, meta, info.version)


class CorruptingStore(MemoryStore):
    """Keeps different bytes than it was sent (same length; metadata untouched), via ``corrupt``."""

    def put(self, key: str, stream: BinaryIO, **kwargs) -> ObjectInfo:  # type: ignore[override]
        info = super().put(key, stream, **kwargs)
        data = bytearray(self.raw(key))
        if data:
            data[len(data) // 2] ^= 0xFF
        self.corrupt(key, bytes(data))
        return info


class _BreakingStream(io.RawIOBase):
    def __init__(self, data: bytes, fail_after: int, error: Exception) -> None:
        self._data, self._pos, self._fail_after, self._error = data, 0, fail_after, error

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._fail_after <= self._pos < len(self._data):
            raise self._error
        limit = self._fail_after if self._pos < self._fail_after else len(self._data)
        end = limit if size is None or size < 0 else min(limit, self._pos + size)
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        return chunk


class BreakingReadStore(MemoryStore):
    """Streams break after ``fail_after`` bytes with ``error``, ``breaks`` times (then work)."""

    def __init__(self, *, fail_after: int, error: Exception | None = None, breaks: int = 10**9) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.error = error or PermanentError("connection reset mid-stream")
        self.breaks = breaks
        self.opened_at: list[int] = []

    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        stream = super().open_read(key, offset=offset, length=length)
        self.opened_at.append(offset)
        if self.breaks <= 0:
            return stream
        self.breaks -= 1
        return _BreakingStream(stream.read(), self.fail_after, self.error)  # type: ignore[return-value]


class ChunkLimitStore(MemoryStore):
    """Reads uploads in ``read_size`` pieces and remembers the largest piece it got, to prove the
    reader never hands over more than was asked for."""

    def __init__(self, read_size: int) -> None:
        super().__init__()
        self.read_size = read_size
        self.largest = 0

    def put(self, key: str, stream: BinaryIO, **kwargs) -> ObjectInfo:  # type: ignore[override]
        parts = []
        while chunk := stream.read(self.read_size):
            self.largest = max(self.largest, len(chunk))
            parts.append(chunk)
        return super().put(key, io.BytesIO(b"".join(parts)), **kwargs)


TRANSIENT = TransientError("throttled")


# --- files and manifests ---------------------------------------------------------------------------

def write_file(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644,
               mtime_ns: int | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def write_random(path: str | os.PathLike[str], size: int, *, seed: int = 1) -> Path:
    """A file of ``size`` pseudo-random bytes, written in 1 MiB pieces (bounded memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    with open(path, "wb") as fh:
        left, counter = size, 0
        while left > 0:
            piece = bytes([counter % 251]) + block[1:]  # different blocks, cheap to make
            fh.write(piece[:left])
            left -= len(piece)
            counter += 1
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(root: str | os.PathLike[str]) -> dict[str, tuple]:
    """rel path -> (kind, sha256 or link target, size, mode, uid, gid, mtime_ns) for the tree."""
    root = Path(root)
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", sha256_file(path), st.st_size, stat.S_IMODE(st.st_mode), st.st_uid,
                            st.st_gid, st.st_mtime_ns)
    return out


# --- the subprocess runner -------------------------------------------------------------------------

def _main(argv: list[str]) -> int:
    """Run one HSM operation in this process; optionally SIGKILL ourselves at a failpoint, or
    announce ``paused`` once ``pause_at`` bytes have moved and wait to be killed."""
    from agent.drivers import posix
    from agent.transfer import RetryPolicy

    parser = argparse.ArgumentParser()
    parser.add_argument("op", choices=["migrate", "recall"])
    parser.add_argument("root")
    parser.add_argument("store")
    parser.add_argument("path")
    parser.add_argument("--failpoint")
    parser.add_argument("--pause-at", type=int)
    parser.add_argument("--chunk", type=int, default=MiB)
    args = parser.parse_args(argv)

    if args.failpoint:
        def kill_at(step: str) -> None:
            if step == args.failpoint:
                os.kill(os.getpid(), signal.SIGKILL)
        posix._failpoint = kill_at  # type: ignore[assignment]

    def progress(done: int, total: int | None) -> None:
        if args.pause_at is not None and done >= args.pause_at:
            print("paused", done, flush=True)
            time.sleep(60)

    fs = posix.PosixFilesystem([args.root], chunk_size=args.chunk, retry=RetryPolicy(attempts=1))
    store = DirStore(args.store)
    if args.op == "migrate":
        result = fs.migrate(args.path, store, progress=progress)
    else:
        result = fs.recall(args.path, store, progress=progress)
    print(json.dumps({"status": str(result.status), "message": result.message}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
