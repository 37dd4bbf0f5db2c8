"""The small-file lane: migrating many small files to a folder target, a group at a time, in
worker processes.

Why a lane of its own: a file of a few KiB costs the general path (``PosixFilesystem.migrate``
through ``FolderStore.put``) about 0.9 ms of Python a file - resolving the path twice, a lock
object per call, the store's generic put with its own directory walk, a ``head`` that re-reads
and re-parses the metadata - and the interpreter lock keeps that on one core however many
threads run it. ``cp -a`` copies such a file in 0.05-0.1 ms. The lane does the same protocol with
a directory walk per group instead of per file, no per-file objects beyond the record, and runs
groups in separate processes, so both cores work.

The protocol per file is the general path's, in the same order; only the syncs are shared by a
group:

1. open the file without following links (``O_NOFOLLOW`` under directory descriptors opened the
   same way from the space root), lock it (``flock``), check it is a regular small file with no
   HSM record (anything else - a record, a symlink, a large file, an occupied key, a busy lock,
   an error - is handed back untouched: ``None``, and the caller runs the general path on it);
2. read it whole, hash it (SHA-256), write the object to a temporary file in the key's directory
   with its metadata xattr (the format ``FolderStore`` writes), and link it into place
   (``link`` fails on an existing name, so nothing is ever replaced);
3. after the group, one ``syncfs`` of the target folder's filesystem (with the store's ``fsync``
   setting on) makes the group's objects durable;
4. verify each object (the inode at the key is the one written, with the size read), check the
   source did not change (size, mtime, ctime through the descriptor, inode at the path) and
   record the state in the file's xattr: ``premigrated``, or, for a full migration, ``migrated``
   with ``pending=stub``;
5. full migration only: one ``syncfs`` of the space's filesystem makes those records durable,
   then each file's blocks are released, its times restored and its record finished - unless the
   file changed after its record was written (size, mtime or ctime), which clears the record
   and leaves the file resident.

The caller syncs the space's filesystem once more before it reports anything (as for the general
path's staged groups). A crash at any step leaves what the general path would leave: an unlinked
temporary file, an object without a record (never reused unless read back whole), or a record
whose pending stub a re-run finishes.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import logging
import multiprocessing
import os
import signal
import stat as stat_mod
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TypeVar

from agent import native
from agent.drivers import posix
from agent.drivers.base import DriverError
from agent.drivers.fs import XATTR_NAME as OBJECT_XATTR
from agent.drivers.fs import FolderStore, encode_metadata
from agent.drivers.posix import (
    PathRefused,
    PosixFilesystem,
    ResultStatus,
    SpacePath,
    changes_since,
    finish_stub,
    syncfs,
)
from agent.hsm.metadata import ObjectMetadata, to_metadata
from agent.hsm.state import XATTR_NAME as RECORD_XATTR
from agent.hsm.state import HsmRecord, HsmState, Pending, clear_record
from agent.libc import libc_function
from agent.transfer import read_all

log = logging.getLogger(__name__)

#: ``None``: not done here, run the general path. Else (status, message, key).
LaneResult = tuple[str, str, str | None] | None

_NO_ATIME = getattr(os, "O_NOATIME", 0)


@dataclass(frozen=True)
class LaneSettings:
    """Everything a worker process needs (picklable: no descriptors, no callables)."""

    space_root: str  # the real path of the space root the group's paths are relative to
    target_root: str  # the folder target (``FolderStore.root``)
    target_name: str
    key_prefix: str
    premigrate: bool
    skip_modified: bool
    stub_size: int
    chunk_size: int
    durable: bool  # the store's ``fsync`` setting: sync the target before recording
    native: bool = True  # steps 1, 2 and 4 in the C core (``agent.native``) where it is built


@dataclass(frozen=True)
class LaneGroup:
    settings: LaneSettings
    rels: tuple[str, ...]  # space-relative, symlink-free paths (``SpacePath.rel``)


@dataclass
class _Staged:
    index: int
    fd: int
    src_dir: int
    name: str
    st: os.stat_result | native.Seen
    key: str
    obj_dir: int
    obj_name: str
    obj_ino: int
    sha256: str
    metadata: bytes | None = None  # the Python loop: the metadata xattr it wrote
    obj_fd: int = -1  # the C core: the object, held open until the commit
    raw: bytes = b""  # the C core: its answer, passed back to its commit
    record: HsmRecord | None = None
    recorded: os.stat_result | native.Recorded | None = None  # the file just after its record was written


class _Dirs:
    """Directory descriptors opened once per group, closed at its end."""

    def __init__(self, open_dir: Callable[[list[str]], int]) -> None:
        self._open_dir = open_dir
        self._fds: dict[str, int] = {}

    def get(self, joined: str) -> int:
        """The directory ``joined`` ("a/b", "" for the root)."""
        fd = self._fds.get(joined)
        if fd is None:
            fd = self._fds[joined] = self._open_dir(joined.split("/") if joined else [])
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _modified(settings: LaneSettings, changes: Sequence[str]) -> LaneResult:
    status = ResultStatus.SKIPPED if settings.skip_modified else ResultStatus.FAILED
    return str(status), f"modified during migrate ({', '.join(changes)} changed); not released", None


def _gone(item: _Staged, reason: str) -> LaneResult:
    return str(ResultStatus.FAILED), f"verification failed: the object is gone ({reason})", item.key


def _replaced(item: _Staged) -> LaneResult:
    return str(ResultStatus.FAILED), "verification failed: the object at the key was replaced", item.key


def _discard(staged: _Staged) -> None:
    try:
        os.unlink(staged.obj_name, dir_fd=staged.obj_dir)
    except OSError:
        pass


class _GroupRun:
    def __init__(self, group: LaneGroup) -> None:
        self.settings = s = group.settings
        self.rels = group.rels
        self.fs = PosixFilesystem([s.space_root], key_prefix=s.key_prefix, chunk_size=s.chunk_size)
        self.store = FolderStore(s.target_root, metadata="xattr", fsync=s.durable, chunk_size=s.chunk_size)
        self.src_dirs = _Dirs(lambda parts: self.fs._open_dir(s.space_root, parts))
        self.obj_dirs = _Dirs(lambda parts: self.store._open_dir(parts, create=True, key=None))
        self.results: list[LaneResult] = [None] * len(group.rels)
        self.staged: list[_Staged] = []

    def run(self) -> list[LaneResult]:
        try:
            core = native.core() if self.settings.native else None
            if core is not None and not core.can_record(self.settings.target_name, self.settings.premigrate):
                core = None
            if core is not None:
                self._stage_native(core)
            else:
                for index, rel in enumerate(self.rels):
                    self._stage(index, rel)
            if self.staged and not self._flush_target():
                return self.results
            committed = self._commit_all(core)
            if not self.settings.premigrate:
                self._release([item for item, done in zip(self.staged, committed, strict=True) if done])
        finally:
            for item in self.staged:
                if item.fd >= 0:
                    os.close(item.fd)
                if item.obj_fd >= 0:
                    os.close(item.obj_fd)
            self.src_dirs.close()
            self.obj_dirs.close()
        return self.results

    # --- 1 and 2: read, hash, write the object -------------------------------------------------------
    def _open_source(self, src_dir: int, name: str) -> int:
        flags = ((os.O_RDONLY if self.settings.premigrate else os.O_RDWR)
                 | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return os.open(name, flags | _NO_ATIME, dir_fd=src_dir)
        except PermissionError:  # O_NOATIME needs ownership (or CAP_FOWNER)
            return os.open(name, flags, dir_fd=src_dir)

    def _stage(self, index: int, rel: str) -> None:
        s = self.settings
        parent, _, name = rel.rpartition("/")
        try:
            src_dir = self.src_dirs.get(parent)
            fd = self._open_source(src_dir, name)
        except (OSError, PathRefused):
            return  # missing, a symlink, a directory...: the general path says which
        keep = False
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode) or st.st_size > s.chunk_size:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if RECORD_XATTR in os.listxattr(fd):  # (no exception raised for the usual answer)
                    return  # managed already: the general path decides (skip, release, re-upload)
            except OSError:
                return  # busy, or no xattrs here: the general path says which
            data = read_all(fd, limit=st.st_size)  # one more byte shows growth
            if len(data) != st.st_size:
                self.results[index] = _modified(s, ["size"])
                return
            sha = hashlib.sha256(data).hexdigest()
            meta = to_metadata(ObjectMetadata(
                sha256=sha, size=st.st_size, mode=stat_mod.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                mtime_ns=st.st_mtime_ns, atime_ns=st.st_atime_ns, path=rel, inode=st.st_ino,
                ctime_ns=st.st_ctime_ns))
            key = self.fs.object_key(SpacePath(s.space_root, rel))
            segments = self.store._segments(key)
            obj_dir = self.obj_dirs.get("/".join(segments[:-1]))
            obj_name = segments[-1]
            metadata = encode_metadata(meta)
            obj_ino = self._write_object(obj_dir, obj_name, data, metadata)
            if obj_ino is None:
                return  # the key is taken: the general path picks a key (reuse, sibling)
            posix._failpoint("lane:uploaded")
            self.staged.append(_Staged(index, fd, src_dir, name, st, key, obj_dir, obj_name, obj_ino, sha,
                                       metadata=metadata))
            keep = True
        except (OSError, DriverError, PathRefused, ValueError):
            return  # nothing recorded: the general path meets the same error and reports it
        finally:
            if not keep:
                os.close(fd)

    def _stage_native(self, core: native.LaneCore) -> None:
        """``_stage`` for the whole group in the C core: this side only finds the directories and
        keys (so both loops share that code), the core opens, locks, checks, reads, hashes and
        writes. A file whose metadata would leave its path out takes ``_stage``."""
        s = self.settings
        todo: list[tuple[int, int, str, str, int, str]] = []  # index, src_dir, name, key, obj_dir, obj_name
        paths: list[bytes] = []
        metadata_path, object_key, segments_of = core.metadata_path, self.fs.object_key, self.store._segments
        src_dirs, obj_dirs, root = self.src_dirs, self.obj_dirs, s.space_root
        for index, rel in enumerate(self.rels):
            path = metadata_path(rel)
            if path is None:
                self._stage(index, rel)
                continue
            parent, _, name = rel.rpartition("/")
            try:
                src_dir = src_dirs.get(parent)
                key = object_key(SpacePath(root, rel))
                obj_parent, _, obj_name = key.rpartition("/")
                segments_of(key)  # (checked: a key the folder cannot hold goes the general way)
                obj_dir = obj_dirs.get(obj_parent)
            except (OSError, DriverError, PathRefused, ValueError):
                continue  # the general path meets the same error and reports it
            todo.append((index, src_dir, name, key, obj_dir, obj_name))
            paths.append(path)
        flags = ((os.O_RDONLY if s.premigrate else os.O_RDWR) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        answers = core.stage([t[1] for t in todo], [os.fsencode(t[2]) for t in todo], [t[4] for t in todo],
                             [os.fsencode(t[5]) for t in todo], paths, open_flags=flags, noatime=_NO_ATIME,
                             limit=s.chunk_size)
        for (index, src_dir, name, key, obj_dir, obj_name), answer in zip(todo, answers, strict=True):
            if answer.status == native.STAGED:
                self.staged.append(_Staged(index, answer.fd, src_dir, name, answer.seen, key, obj_dir, obj_name,
                                           answer.obj_ino, answer.sha256, obj_fd=answer.obj_fd, raw=answer.raw))
                posix._failpoint("lane:uploaded")  # (per file, as in ``_stage``; all are linked by now)
            elif answer.status == native.SHORT:
                self.results[index] = _modified(s, ["size"])

    def _write_object(self, obj_dir: int, obj_name: str, data: bytes, metadata: bytes) -> int | None:
        """The new object's inode, or None when ``obj_name`` exists (nothing is replaced)."""
        tmp, ofd = self.store._create_temp(obj_dir)
        try:
            try:
                written = os.write(ofd, data)
                if written < len(data):  # rare for a regular file: finish it
                    view = memoryview(data)[written:]
                    while view:
                        view = view[os.write(ofd, view):]
                os.setxattr(ofd, OBJECT_XATTR, metadata)
                ino = os.fstat(ofd).st_ino
            finally:
                os.close(ofd)
            try:
                os.link(tmp, obj_name, src_dir_fd=obj_dir, dst_dir_fd=obj_dir, follow_symlinks=False)
            except FileExistsError:
                return None
            return ino
        finally:
            os.unlink(tmp, dir_fd=obj_dir)

    # --- 3: the group's objects durable ----------------------------------------------------------------
    def _flush_target(self) -> bool:
        """Whether the group's objects are durable (if not, every staged path has failed)."""
        if not self.settings.durable:
            return True
        try:
            root = self.store._open_root()
            try:
                syncfs(root)
            finally:
                os.close(root)
        except (OSError, DriverError) as exc:
            message = f"the target folder could not be synced: {getattr(exc, 'strerror', None) or exc}"
            for item in self.staged:
                self.results[item.index] = (str(ResultStatus.FAILED), message, item.key)
            return False
        return True

    # --- 4: verify, check, record ------------------------------------------------------------------------
    def _commit_all(self, core: native.LaneCore | None) -> list[bool]:
        """Step 4 for every staged file, in the C core where it is loaded; whether each was recorded."""
        by_core = [item for item in self.staged if item.raw] if core is not None else []
        if not by_core:
            return [self._commit(item) for item in self.staged]
        assert core is not None
        s = self.settings
        answers = core.commit([native.ToCommit(i.raw, i.src_dir, i.name, i.obj_dir, i.obj_name, i.key)
                               for i in by_core],
                              target=s.target_name, premigrate=s.premigrate, stub_limit=s.stub_size)
        for item in by_core:  # closed by the core
            item.obj_fd = -1
            if s.premigrate:
                item.fd = -1
        done: dict[int, bool] = {}
        for item, answer in zip(by_core, answers, strict=True):
            if answer.status == native.COMMITTED:
                if not s.premigrate:  # what the release needs (the same record the core wrote)
                    item.record, item.recorded = self._record(item), answer.recorded
                self._recorded(item)
            elif answer.status == native.GONE:
                self.results[item.index] = _gone(item, os.strerror(answer.err))
            elif answer.status == native.REPLACED:
                self.results[item.index] = _replaced(item)
            elif answer.status == native.MODIFIED:
                self.results[item.index] = _modified(s, answer.changed)
            elif answer.status == native.RECORD_FAILED:
                self.results[item.index] = (str(ResultStatus.FAILED), os.strerror(answer.err), item.key)
            # HAND_BACK: its object removed, nothing recorded; the general path starts over
            done[item.index] = answer.status == native.COMMITTED
        # Staged by the Python loop (a path the core's template cannot hold): committed the same way.
        return [done[item.index] if item.raw else self._commit(item) for item in self.staged]

    def _record(self, item: _Staged) -> HsmRecord:
        s, st = self.settings, item.st
        state, pending = (HsmState.PREMIGRATED, None) if s.premigrate else (HsmState.MIGRATED, Pending.STUB)
        return HsmRecord(state, s.target_name, item.key, item.sha256, st.st_size, mtime_ns=st.st_mtime_ns,
                         inode=st.st_ino, ctime_ns=st.st_ctime_ns, pending=pending,
                         stub_size=0 if s.premigrate else min(s.stub_size, st.st_size))

    def _recorded(self, item: _Staged) -> None:
        posix._failpoint("lane:recorded")
        if self.settings.premigrate:
            self.results[item.index] = (str(ResultStatus.PROCESSED), "premigrated (remote copy verified)", item.key)

    def _commit(self, item: _Staged) -> bool:
        s = self.settings
        try:  # the file at the key is the one written (an inode number alone is reused at once)
            ofd = os.open(item.obj_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=item.obj_dir)
        except OSError as exc:
            self.results[item.index] = (_replaced(item) if exc.errno == errno.ELOOP
                                        else _gone(item, exc.strerror or str(exc)))
            return False
        try:
            obj = os.fstat(ofd)
            same = (obj.st_ino == item.obj_ino and obj.st_size == item.st.st_size
                    and os.getxattr(ofd, OBJECT_XATTR) == item.metadata)
        except OSError:
            same = False
        finally:
            os.close(ofd)
        if not same:
            self.results[item.index] = _replaced(item)
            return False
        try:
            changes = changes_since(item.st, item.fd, item.src_dir, item.name)
        except OSError:
            _discard(item)  # not recorded: the general path starts over and reports what it meets
            return False
        if changes:
            _discard(item)
            self.results[item.index] = _modified(s, changes)
            return False
        item.record = self._record(item)
        try:
            os.setxattr(item.fd, RECORD_XATTR, item.record.to_bytes())
            if not s.premigrate:  # the release compares the file with this
                item.recorded = os.fstat(item.fd)
        except OSError as exc:
            self.results[item.index] = (str(ResultStatus.FAILED), exc.strerror or str(exc), item.key)
            return False
        self._recorded(item)
        return True

    # --- 5: release ---------------------------------------------------------------------------------------
    def _release(self, items: Sequence[_Staged]) -> None:
        if not items:
            return
        try:
            root = os.open(self.settings.space_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                syncfs(root)  # every "migrated, pending stub" record durable before any block goes
            finally:
                os.close(root)
        except OSError as exc:
            for item in items:  # recorded, not released: a re-run finishes the stub
                self.results[item.index] = (str(ResultStatus.FAILED), "recorded, but the filesystem could not be "
                                            f"synced: {exc.strerror or exc}", item.key)
            return
        posix._failpoint("lane:state-synced")
        for item in items:
            record, recorded = item.record, item.recorded
            assert record is not None and recorded is not None
            try:
                now = os.fstat(item.fd)
                if (now.st_size, now.st_mtime_ns, now.st_ctime_ns) != (
                        recorded.st_size, recorded.st_mtime_ns, recorded.st_ctime_ns):
                    # Touched while the group's records were synced: its resident bytes may be newer
                    # than the remote copy, so it is not released and no longer claims to be migrated.
                    clear_record(item.fd)
                    status = ResultStatus.SKIPPED if self.settings.skip_modified else ResultStatus.FAILED
                    self.results[item.index] = (str(status), "modified during migrate (changed after it was "
                                                "recorded); not released", item.key)
                    continue
                finish_stub(item.fd, record, item.st.st_atime_ns)
            except OSError as exc:
                self.results[item.index] = (str(ResultStatus.FAILED), f"recorded as migrated, blocks not released "
                                            f"({exc.strerror or exc}); a re-run finishes it", item.key)
                continue
            self.results[item.index] = (str(ResultStatus.PROCESSED), "migrated (remote copy verified, blocks "
                                        "released)", item.key)


def run_group(group: LaneGroup) -> list[LaneResult]:
    """Migrate one group (see the module docstring); a result per path, ``None`` for the paths
    the general path must take. Runs in a worker process or in the caller's thread."""
    return _GroupRun(group).run()


# --- recall ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecallSettings:
    """What a worker needs to recall a group of stubs from a folder target (picklable)."""

    space_root: str
    target_name: str
    target_root: str  # ``FolderStore.root``
    metadata: str  # ``FolderStore.metadata_mode()``
    chunk_size: int
    verify: bool
    restore_times: bool
    default_uid: int | None
    default_gid: int | None


@dataclass(frozen=True)
class RecallGroup:
    settings: RecallSettings
    rels: tuple[str, ...]


def run_recall_group(group: RecallGroup) -> list[LaneResult]:
    """Recall one group of small stubs with the general path's own
    ``PosixFilesystem.recall_group`` (every step and check of ``recall``, durability shared by
    the group), in a worker process: out of the interpreter lock's way. A file whose record
    names another target (or none) is handed back."""
    s = group.settings
    fs = PosixFilesystem([s.space_root], chunk_size=s.chunk_size)
    stores = {s.target_name: FolderStore(s.target_root, metadata=s.metadata, chunk_size=s.chunk_size)}
    done = fs.recall_group([os.path.join(s.space_root, rel) for rel in group.rels], stores, verify=s.verify,
                           default_uid=s.default_uid, default_gid=s.default_gid, restore_times=s.restore_times,
                           only_target=s.target_name)
    return [None if result is None else (str(result.status), result.message, result.key) for result in done]


# --- where groups run -------------------------------------------------------------------------------

#: A group of either kind: both carry ``rels``, which a lost group hands back whole.
Group = TypeVar("Group", LaneGroup, RecallGroup)


_PR_SET_PDEATHSIG = 1


def _worker_started() -> None:
    """In each worker process: die with our parent (the forkserver, which itself exits when the
    agent process does), so a killed agent never leaves a worker finishing groups behind it."""
    prctl = libc_function("prctl", ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class LanePool:
    """Runs groups in ``workers`` processes (started on first use, from a forkserver: the agent
    process has threads, which ``fork`` does not copy safely), or in the calling thread when
    ``workers`` is 0 or this process may not have children. At most two groups a worker are
    queued, so a cancel between groups stops the batch quickly. A worker that dies takes only its
    groups' paths back to the general path (``None`` results); the pool is started again on the
    next batch."""

    def __init__(self, workers: int) -> None:
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.workers = workers
        self.completed = 0  # groups a worker finished
        self.handed_back = 0  # groups lost to a worker's death, redone by the general path
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def in_processes(self) -> bool:
        """Whether groups run in worker processes (else in the calling thread)."""
        return self.workers > 0 and not multiprocessing.current_process().daemon

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_started)
            return self._executor

    def run(self, groups: Iterable[Group], *, stop: Callable[[], bool],
            work: Callable[[Group], list[LaneResult]] | None = None) -> Iterator[tuple[Group, list[LaneResult]]]:
        """Each group with its results (``work(group)``: by default ``run_group``, which migrates;
        ``run_recall_group`` recalls), in order; no new group starts once ``stop()`` is true."""
        work = work or run_group
        if not self.in_processes:
            # A daemonic process (a Celery prefork pool's child) may not start processes; there
            # the pool's own processes are the parallelism: one batch per child.
            for group in groups:
                if stop():
                    return
                self.completed += 1
                yield group, work(group)
            return
        pending: deque[tuple[Group, Future[list[LaneResult]]]] = deque()
        source = iter(groups)
        executor = self._pool()
        broken = False
        while True:
            while not broken and len(pending) < 2 * self.workers and not stop():
                group = next(source, None)
                if group is None:
                    break
                try:
                    pending.append((group, executor.submit(work, group)))
                except BrokenProcessPool:
                    broken = True
                    self.handed_back += 1
                    yield group, [None] * len(group.rels)
            if not pending:
                break
            group, future = pending.popleft()
            try:
                results = future.result()
                self.completed += 1
            except BrokenProcessPool:
                broken = True
                self.handed_back += 1
                results = [None] * len(group.rels)  # the general path redoes them (it is idempotent)
            yield group, results
        if broken:
            log.warning("a small-file lane worker died: %d group(s) went the general way", self.handed_back)
            self.close()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_SHARED: dict[int, LanePool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(workers: int) -> LanePool:
    """The process's pool of ``workers`` processes (one per size), kept for the next batches."""
    with _SHARED_LOCK:
        pool = _SHARED.get(workers)
        if pool is None:
            pool = _SHARED[workers] = LanePool(workers)
        return pool
