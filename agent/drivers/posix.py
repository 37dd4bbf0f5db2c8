"""The POSIX filesystem driver: browsing with HSM state, and the HSM operations on any Linux
filesystem with user extended attributes (ext4, xfs, btrfs, tmpfs). The GPFS driver extends it.

The first promise is that no operation loses a file. How each operation keeps it:

* **migrate** reads the file (hashing), uploads it (hashing exactly the bytes sent), verifies the
  remote copy (size and checksum as the store reports them; optionally by re-reading), checks
  that size, mtime, ctime and inode did not change since reading began, records ``premigrated``,
  and only then - for a full migration - records ``migrated`` (pending) and releases the blocks.
  The record is written *before* the blocks go, so a crash leaves at worst a resident file marked
  migrated, which a recall or a re-run repairs; never a released file marked resident. The
  repair first checks the file holds what the cut release left (as recorded, or punched): one
  written to after the crash keeps its new bytes (it becomes a modified ``hydrated`` file, or a
  stub written to) and the remote copy stays referenced.
* **recall** writes into the stub in place (hard links and the inode survive) under an exclusive
  lock. The state stays ``migrated`` (with ``pending=recall``) until every byte was written,
  hashed, verified and fsynced; only then does it flip to ``hydrated``. A crash mid-way leaves a
  stub at its original size that is not marked resident, and the re-run starts over.
  ``recall_group`` keeps that order for a group of small stubs, with one ``syncfs`` per step for
  the whole group in place of the fsyncs.
* Remote objects are never overwritten unless ``overwrite`` is set: an occupied key gets a unique
  sibling (``<key>~<sha256 prefix>``), unless the object there is provably this file's own
  upload from an interrupted run (same checksum, path, inode and ctime), which is reused.
* Every path is checked against the space roots: absolute, no ``..``, and parent directories
  are opened one component at a time with ``O_NOFOLLOW`` from the root, so a symlink (or a
  directory swapped for one) cannot lead an operation outside the space. Symlinks themselves are
  never migrated or followed.

Hard links share one inode, and the record lives on the inode: the first link migrated uploads
it (under that link's key) and stubs every link at once; the other links then report
``skipped: already migrated``, and a recall through any link restores all of them. Reverse stubs
built from the objects therefore recreate one file per inode, not the extra names.

Every operation returns a ``PathResult``; one bad file never raises out of a batch. The driver is
not thread-safe per file: the exclusive ``flock`` makes a second agent working on the same file
fail fast ("busy") instead of interleaving.

Known limit: POSIX has no hook to stop a writer between the final "unchanged?" check and the
hole punch (GPFS/DMAPI has); that window is a few system calls long and documented here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import grp
import hashlib
import os
import pwd
import re
import stat as stat_mod
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from agent import transfer
from agent.drivers.base import DEFAULT_CHUNK, AlreadyExists, DriverError, NotFound, ObjectInfo, ObjectStore
from agent.hsm.metadata import MetadataError, ObjectMetadata, parse_metadata, to_metadata
from agent.hsm.state import (
    HsmRecord,
    HsmState,
    HsmStateError,
    Pending,
    check_transition,
    clear_record,
    read_record,
    write_record,
)
from agent.libc import libc_function
from agent.transfer import CancelFn, Cancelled, ProgressFn, RetryPolicy, VerificationError

Stores = ObjectStore | Mapping[str, ObjectStore]
#: Longest deterministic key: stores take 1024 bytes and a unique suffix may follow (26 bytes).
MAX_BASE_KEY_BYTES = 960


class ResultStatus(StrEnum):
    PROCESSED = "processed"
    FAILED = "failed"  # with the reason in ``message``
    ABORTED = "aborted"  # cancelled, or a missing path under ``abort_missing``
    SKIPPED = "skipped"  # nothing to do (already done, not applicable)


@dataclass(frozen=True)
class PathResult:
    """The outcome of one operation on one path (the per-path entry of a task's result)."""

    path: str
    status: ResultStatus
    message: str = ""
    key: str | None = None


class PathRefused(Exception):
    """The path is outside the space roots, contains ``..``, or crosses a symlink leading out."""


class _Outcome(Exception):
    """Ends an operation early with a result; raised deep inside, turned into a ``PathResult``."""

    def __init__(self, status: ResultStatus, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.key = status, message, key


class _Busy(_Outcome):
    """Another open file description holds the file's lock (another operation, or another path
    of the same inode within one group)."""

    def __init__(self) -> None:
        super().__init__(ResultStatus.FAILED, "busy: another HSM operation holds this file")


def _failpoint(step: str) -> None:
    """Crash-test hook, a no-op. Data-safety tests replace it in a subprocess to SIGKILL the agent
    at exact steps (``migrate:uploaded``, ``stub:state-written``, ``recall:written``, ...)."""


# --- releasing blocks ----------------------------------------------------------------------------

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
def _fallocate() -> Any:
    return libc_function("fallocate", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


def release_blocks(fd: int, offset: int, size: int) -> None:
    """Free the data blocks of ``[offset, size)`` and keep the file's size.

    Punching a hole keeps the size constant throughout, so no observer (or crash) ever sees a
    short file. Where the filesystem cannot punch, truncate to ``offset`` and re-extend (sparse).
    """
    if size <= offset:
        return
    fn = _fallocate()
    if fn:
        if fn(fd, _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE, offset, size - offset) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(err, os.strerror(err))
    os.ftruncate(fd, offset)
    os.ftruncate(fd, size)


def holds_data(fd: int, start: int, end: int, *, chunk_size: int = DEFAULT_CHUNK) -> bool:
    """Whether any byte of ``[start, end)`` is not zero: holes are skipped (``SEEK_DATA``), and
    what a filesystem reports as data is read, since some keep zeros or cannot tell."""
    if end <= start:
        return False
    try:
        offset = os.lseek(fd, start, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # nothing but holes up to the end of the file
            return False
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        offset = start
    while offset < end:
        chunk = os.pread(fd, min(chunk_size, end - offset), offset)
        if not chunk:
            return False
        if chunk.count(0) != len(chunk):
            return True
        offset += len(chunk)
    return False


# --- entries ---------------------------------------------------------------------------------------

class EntryKind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    OTHER = "other"


@dataclass(frozen=True)
class FileEntry:
    """One directory entry with its HSM state, as the file browser and scans see it.

    ``stale`` is True when a resident file's size, mtime or inode no longer match its record:
    the remote copy is out of date and a migrate will upload the new content.
    """

    path: str
    rel: str
    kind: EntryKind
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    ctime_ns: int
    inode: int
    nlink: int
    blocks: int
    state: HsmState = HsmState.UNMANAGED
    record: HsmRecord | None = None
    stale: bool = False
    error: str | None = None


def _kind(mode: int) -> EntryKind:
    if stat_mod.S_ISREG(mode):
        return EntryKind.FILE
    if stat_mod.S_ISDIR(mode):
        return EntryKind.DIRECTORY
    if stat_mod.S_ISLNK(mode):
        return EntryKind.SYMLINK
    return EntryKind.OTHER


def _is_stale(record: HsmRecord, st: os.stat_result) -> bool:
    return record.state in (HsmState.PREMIGRATED, HsmState.HYDRATED) and (
        st.st_size != record.size or st.st_mtime_ns != record.mtime_ns or st.st_ino != record.inode)


@dataclass(frozen=True)
class SpacePath:
    """A path proven to lie inside a space root. ``rel`` is symlink-free and ``/``-separated."""

    root: str
    rel: str

    @property
    def path(self) -> str:
        return os.path.join(self.root, self.rel) if self.rel else self.root

    @property
    def parts(self) -> list[str]:
        return self.rel.split("/") if self.rel else []


_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass
class _Open:
    sp: SpacePath
    dir_fd: int
    name: str
    fd: int
    st: os.stat_result


def store_name(store: ObjectStore) -> str:
    """The target name recorded with a migrated file when the caller names none."""
    return str(getattr(store, "name", "") or store.storage_type)


class PosixFilesystem:
    """HSM operations on files under one or more space roots (mountpoints or directories)."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]], *, key_prefix: str = "",
                 chunk_size: int = DEFAULT_CHUNK, retry: RetryPolicy | None = None) -> None:
        if not roots:
            raise ValueError("at least one space root is required")
        self._roots: list[tuple[str, str]] = []
        for root in roots:
            lexical = os.path.normpath(os.fspath(root))
            if not os.path.isabs(lexical) or not os.path.isdir(lexical):
                raise ValueError(f"space root {lexical!r} is not an existing absolute directory")
            self._roots.append((lexical, os.path.realpath(lexical)))
        # With no root inside another, a path's space and parent depend only on its parent's
        # spelling, so ``resolve`` may answer from a batch's cache by that spelling alone.
        self._flat_roots = not any(a != b and _within(a, b) for a, _ in self._roots for b, _ in self._roots)
        self.key_prefix = key_prefix
        self.chunk_size = chunk_size
        self.retry = retry if retry is not None else RetryPolicy()

    # --- path safety -----------------------------------------------------------------------------
    def resolve(self, path: str | os.PathLike[str], *,
                parents: dict[str, tuple[str, str]] | None = None) -> SpacePath:
        """Map ``path`` to its space, refusing anything that is or leads outside one.

        ``parents`` caches, for one batch, each parent directory's place in its space by the
        parent's spelling in the paths given (a batch lists hundreds of files per directory, and
        ``realpath`` costs a ``lstat`` per component): a path whose parent is spelled as one
        seen before needs only its last component checked. The operations themselves open
        directories without following links, so a symlink swapped in after the lookup is still
        refused there."""
        raw = os.fsdecode(os.fspath(path))
        head, _, last = raw.rpartition("/")
        plain = last not in ("", ".", "..")  # then the parent is spelled ``head``, whatever it holds
        if parents is not None and plain and self._flat_roots:
            known = parents.get(head)
            if known is not None and "\0" not in last:
                real, parent_rel = known
                return SpacePath(real, f"{parent_rel}/{last}" if parent_rel else last)
        if "\0" in raw:
            raise PathRefused("NUL in path")
        if not os.path.isabs(raw):
            raise PathRefused("path must be absolute")
        if ".." in raw.split("/"):
            raise PathRefused("'..' is not allowed in paths")
        norm = "/" + os.path.normpath(raw).lstrip("/")
        match = next(((lexical, real) for lexical, real in self._roots if _within(norm, lexical)), None)
        if match is None:
            raise PathRefused("outside the space roots")
        lexical, real = match
        rel = norm[len(lexical):].lstrip("/")
        if not rel:
            return SpacePath(real, "")
        parent, _, name = rel.rpartition("/")
        if parent:
            parent_real = os.path.realpath(real + "/" + parent)
            if not _within(parent_real, real):
                raise PathRefused("a symlink in the path leads outside the space")
            parent = os.path.relpath(parent_real, real)
            parent = "" if parent == "." else parent
        if parents is not None and plain:
            parents[head] = (real, parent)
        return SpacePath(real, f"{parent}/{name}" if parent else name)

    def _open_dir(self, root: str, parts: Sequence[str], *, create: bool = False) -> int:
        """Open the directory ``root/parts...`` one component at a time, never following a
        symlink, so a swap made after ``resolve`` cannot redirect us outside the root."""
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    child = os.open(part, flags, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass  # another thread or agent created it since our open: use theirs
                    child = os.open(part, flags, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise PathRefused(f"{part!r} is a symlink or not a directory") from None
                    raise
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _refuse_escaping_symlink(self, sp: SpacePath) -> None:
        if not _within(os.path.realpath(sp.path), sp.root):
            raise PathRefused("symlink resolves outside the space")

    @contextmanager
    def _open_regular(self, sp: SpacePath, *, write: bool, verb: str) -> Iterator[_Open]:
        """Open the regular file at ``sp`` without following links, locked exclusively."""
        if not sp.rel:
            raise _Outcome(ResultStatus.SKIPPED, f"the space root is a directory: not {verb}")
        dir_fd = self._open_dir(sp.root, sp.parts[:-1])
        name = sp.parts[-1]
        fd = -1
        try:
            lst = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat_mod.S_ISLNK(lst.st_mode):
                self._refuse_escaping_symlink(sp)
                raise _Outcome(ResultStatus.SKIPPED, f"symlink: not {verb} (links are never followed)")
            if stat_mod.S_ISDIR(lst.st_mode):
                raise _Outcome(ResultStatus.SKIPPED, f"directory: not {verb}")
            if not stat_mod.S_ISREG(lst.st_mode):
                raise _Outcome(ResultStatus.SKIPPED, f"not a regular file: not {verb}")
            flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:  # O_NOATIME: our reading should not count as the user's access
                fd = os.open(name, flags | os.O_NOATIME, dir_fd=dir_fd)
            except PermissionError:
                fd = os.open(name, flags, dir_fd=dir_fd)
            st = os.fstat(fd)
            if st.st_ino != lst.st_ino or not stat_mod.S_ISREG(st.st_mode):
                raise _Outcome(ResultStatus.FAILED, "the file was replaced while being opened")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _Busy() from None
            yield _Open(sp, dir_fd, name, fd, st)
        finally:
            if fd >= 0:
                os.close(fd)
            os.close(dir_fd)

    def _run(self, path: str | os.PathLike[str], body: Callable[[SpacePath], _Outcome], *,
             abort_missing: bool = False) -> PathResult:
        """Run one operation and turn every expected failure into a per-path result."""
        return self._guard(os.fsdecode(os.fspath(path)), lambda: body(self.resolve(path)),
                           abort_missing=abort_missing)

    @staticmethod
    def _guard(shown: str, run: Callable[[], _Outcome], *, abort_missing: bool = False) -> PathResult:
        try:
            outcome = run()
        except _Outcome as raised:
            outcome = raised
        except PathRefused as exc:
            outcome = _Outcome(ResultStatus.FAILED, f"refused: {exc}")
        except FileNotFoundError:
            outcome = (_Outcome(ResultStatus.ABORTED, "missing: aborting (abort_missing)") if abort_missing
                       else _Outcome(ResultStatus.SKIPPED, "missing"))
        except Cancelled:
            outcome = _Outcome(ResultStatus.ABORTED, "cancelled")
        except VerificationError as exc:
            outcome = _Outcome(ResultStatus.FAILED, f"verification failed: {exc}", exc.key)
        except DriverError as exc:
            outcome = _Outcome(ResultStatus.FAILED, f"{type(exc).__name__}: {exc}", exc.key)
        except (HsmStateError, MetadataError) as exc:
            outcome = _Outcome(ResultStatus.FAILED, f"bad HSM data: {exc}")
        except OSError as exc:
            outcome = _Outcome(ResultStatus.FAILED, f"{exc.strerror or exc}")
        return PathResult(shown, outcome.status, outcome.message, outcome.key)

    def batch(self, operation: Callable[[str], PathResult], paths: Iterable[str], *,
              should_cancel: CancelFn | None = None) -> list[PathResult]:
        """Apply ``operation`` to each path, checking ``should_cancel`` between files. After an
        ``aborted`` result (cancel, or a missing path under ``abort_missing``) the remaining
        paths are reported aborted, not attempted: one bad file never raises out of a batch."""
        results: list[PathResult] = []
        reason = ""
        for path in paths:
            if not reason and should_cancel is not None and should_cancel():
                reason = "cancelled"
            if reason:
                results.append(PathResult(os.fsdecode(path), ResultStatus.ABORTED, f"not attempted: {reason}"))
                continue
            result = operation(path)
            results.append(result)
            if result.status == ResultStatus.ABORTED:
                reason = f"{result.path}: {result.message}"
        return results

    # --- browsing --------------------------------------------------------------------------------
    def _entry(self, root: str, rel: str, st: os.stat_result) -> FileEntry:
        path = os.path.join(root, rel) if rel else root
        record, error, state, stale = None, None, HsmState.UNMANAGED, False
        if stat_mod.S_ISREG(st.st_mode):
            try:
                record = read_record(path)
            except (HsmStateError, OSError) as exc:
                error = str(exc)
            if record is not None:
                state, stale = record.state, _is_stale(record, st)
        return FileEntry(path, rel, _kind(st.st_mode), st.st_size, stat_mod.S_IMODE(st.st_mode), st.st_uid,
                         st.st_gid, st.st_mtime_ns, st.st_atime_ns, st.st_ctime_ns, st.st_ino, st.st_nlink,
                         st.st_blocks, state, record, stale, error)

    def stat(self, path: str | os.PathLike[str]) -> FileEntry:
        """The entry at ``path`` (a symlink is described, not followed). Raises PathRefused,
        FileNotFoundError."""
        sp = self.resolve(path)
        if not sp.rel:
            return self._entry(sp.root, "", os.stat(sp.root))
        dir_fd = self._open_dir(sp.root, sp.parts[:-1])
        try:
            st = os.stat(sp.parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        finally:
            os.close(dir_fd)
        if stat_mod.S_ISLNK(st.st_mode):
            self._refuse_escaping_symlink(sp)
        return self._entry(sp.root, sp.rel, st)

    def list(self, path: str | os.PathLike[str]) -> list[FileEntry]:
        """The entries of one directory, by name, with details and HSM state."""
        sp = self.resolve(path)
        dir_fd = self._open_dir(sp.root, sp.parts)
        try:
            return [self._entry(sp.root, f"{sp.rel}/{e.name}" if sp.rel else e.name, e.stat(follow_symlinks=False))
                    for e in sorted(os.scandir(dir_fd), key=lambda e: e.name)]
        finally:
            os.close(dir_fd)

    def walk(self, path: str | os.PathLike[str]) -> Iterator[FileEntry]:
        """Every entry below ``path``, depth first, directories before their contents. Symlinks
        are yielded but never followed, so the walk cannot leave the space."""
        sp = self.resolve(path)
        dir_fd = self._open_dir(sp.root, sp.parts)
        try:
            yield from self._walk_fd(sp.root, dir_fd, sp.rel)
        finally:
            os.close(dir_fd)

    def _walk_fd(self, root: str, dir_fd: int, rel: str) -> Iterator[FileEntry]:
        with os.scandir(dir_fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            yield self._entry(root, child_rel, st)
            if not stat_mod.S_ISDIR(st.st_mode):
                continue
            try:
                child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=dir_fd)
            except OSError:
                continue  # vanished, or swapped for a symlink since the scan
            try:
                if os.fstat(child).st_ino == st.st_ino:
                    yield from self._walk_fd(root, child, child_rel)
            finally:
                os.close(child)

    # --- keys --------------------------------------------------------------------------------------
    def object_key(self, sp: SpacePath) -> str:
        """The deterministic key for a file: prefix + space-relative path.

        Names that are not printable UTF-8 are percent-encoded (keys must be valid UTF-8 without
        control characters). Keys are limited to 1024 bytes, so a very long path is cut and
        given a hash of the whole path, leaving room for the unique-key suffix.
        """
        rel = sp.rel
        try:
            rel.encode("utf-8")
            printable = _CONTROL_CHARS.search(rel) is None
        except UnicodeEncodeError:
            printable = False
        if not printable:
            rel = quote(os.fsencode(rel), safe="/")
        key = self.key_prefix + rel
        if len(key.encode("utf-8")) > MAX_BASE_KEY_BYTES:
            digest = hashlib.sha256(os.fsencode(sp.rel)).hexdigest()[:16]
            cut = key.encode("utf-8")[: MAX_BASE_KEY_BYTES - 17].decode("utf-8", "ignore")
            key = f"{cut}~{digest}"
        return key

    def _choose_key(self, store: ObjectStore, base: str, meta: ObjectMetadata, overwrite: bool) -> tuple[str, str]:
        """Pick where to upload: (key, "create" | "overwrite" | "reuse").

        An occupied key is only reused when its object is provably this file's upload from an
        interrupted run (same checksum, size, path, inode and ctime) and only overwritten when
        the caller asked; otherwise the next candidate is tried, ending with a random suffix.
        """
        mine = parse_metadata(to_metadata(meta))
        candidates = [base, f"{base}~{meta.sha256[:16]}", f"{base}~{meta.sha256[:16]}-{uuid.uuid4().hex[:8]}"]
        for key in candidates:
            try:
                info = transfer.call_with_retries(lambda k=key: store.head(k), self.retry)
            except NotFound:
                return key, "create"
            if _same_upload(info, mine) and self._whole(store, key, meta):
                return key, "reuse"
            if overwrite and key == base:
                return key, "overwrite"
        raise _Outcome(ResultStatus.FAILED, f"no free object key near {base!r}")

    def _whole(self, store: ObjectStore, key: str, meta: ObjectMetadata) -> bool:
        """Whether our own earlier upload at ``key`` really holds the bytes its metadata claims.

        Read back in full: a store written with deferred durability (``stage_migrate``) may show
        a torn object after a crash. One that is not whole is left alone (never overwritten) and
        the next key is tried."""
        try:
            transfer.verify_remote(store, key, sha256=meta.sha256, size=meta.size, content=True,
                                   chunk_size=self.chunk_size, retry=self.retry, part_size=meta.part_size)
        except VerificationError:
            return False
        return True

    def _discard(self, store: ObjectStore, key: str) -> None:
        """Best-effort removal of an object this run created and will not reference."""
        try:
            transfer.call_with_retries(lambda: store.delete(key), self.retry)
        except DriverError:
            pass

    # --- migrate -----------------------------------------------------------------------------------
    def migrate(self, path: str | os.PathLike[str], store: ObjectStore, *, premigrate: bool = False,
                overwrite: bool = False, abort_missing: bool = False, skip_modified_during_migrate: bool = False,
                stub_size: int = 0, target: str | None = None, verify_content: bool = False,
                progress: ProgressFn | None = None, should_cancel: CancelFn | None = None) -> PathResult:
        """Copy the file to ``store`` and (unless ``premigrate``) release its blocks.

        Twice equals once: a migrated file is skipped; a premigrated or hydrated file that is
        unchanged is released against its existing remote copy without a new upload. A file
        modified while it was read is never released: ``skipped`` with
        ``skip_modified_during_migrate``, ``failed`` otherwise. ``verify_content`` re-reads the
        uploaded object instead of trusting the store's metadata.
        """
        target_name = target or store_name(store)
        opts = _MigrateOptions(premigrate, overwrite, skip_modified_during_migrate, max(0, stub_size), target_name,
                               verify_content, progress, should_cancel)

        def body(sp: SpacePath) -> _Outcome:
            with self._open_regular(sp, write=not premigrate, verb="migrated") as f:
                record = self._settle_cut_release(f, read_record(f.fd))
                early = self._migrate_decision(f, record, store, opts)
                return early if early is not None else self._upload_open(f, record, store, opts)

        return self._run(path, body, abort_missing=abort_missing)

    def _migrate_decision(self, f: _Open, record: HsmRecord | None, store: ObjectStore,
                          opts: _MigrateOptions) -> _Outcome | None:
        """The outcome of a migration that needs no upload (done here), or None: upload."""
        if record is not None and record.state == HsmState.MIGRATED:
            if record.pending == Pending.STUB and not opts.premigrate:
                self._finish_stub(f, record, f.st.st_atime_ns)
                return _Outcome(ResultStatus.PROCESSED, "finished an interrupted migration", record.key)
            return _Outcome(ResultStatus.SKIPPED, "already migrated", record.key)
        if record is not None and not _is_stale(record, f.st) and record.target == opts.target:
            if opts.premigrate:
                return _Outcome(ResultStatus.SKIPPED, f"already {record.state} with a remote copy", record.key)
            return self._release_open(f, record, store, opts)
        return None

    def _upload_open(self, f: _Open, old: HsmRecord | None, store: ObjectStore, opts: _MigrateOptions) -> _Outcome:
        sent = self._send(f, store, opts)
        if isinstance(sent, _Outcome):
            return sent
        return self._commit(f, old, store, opts, sent, durable=True)

    def _send(self, f: _Open, store: ObjectStore, opts: _MigrateOptions) -> _Outcome | _Sent:
        """Hash and upload the open file: what was sent, or the outcome that ends the migration."""
        st0, fd = f.st, f.fd
        data: bytes | None = None
        part_size: int | None = None
        parts: tuple[bytes, ...] = ()
        if st0.st_size <= self.chunk_size:  # small: one local read, uploaded from memory
            data = transfer.read_all(fd, limit=st0.st_size)  # not chunk_size: no 8 MiB buffer a file
            sha, size = hashlib.sha256(data).hexdigest(), len(data)
        else:
            # Sent in several parts, the file gets a composite checksum, its parts hashed on every
            # core at once; sent whole, a plain SHA-256. Either way the checksum is in the
            # metadata sent before the first byte, and the upload re-hashes what it sends.
            part_size = store.upload_part_size(st0.st_size)
            summed = transfer.checksum_fd(fd, size=st0.st_size, part_size=part_size, chunk_size=self.chunk_size,
                                          should_cancel=opts.should_cancel)
            sha, size, parts = summed.sha256, summed.size, summed.parts
        if size != st0.st_size:
            return self._modified(opts, ["size"], None)
        meta = ObjectMetadata(sha256=sha, size=size, mode=stat_mod.S_IMODE(st0.st_mode), uid=st0.st_uid,
                              gid=st0.st_gid, mtime_ns=st0.st_mtime_ns, atime_ns=st0.st_atime_ns, path=f.sp.rel,
                              inode=st0.st_ino, ctime_ns=st0.st_ctime_ns, part_size=part_size)
        base = self.object_key(f.sp)
        # A small file (already in memory) first tries its base key blind with ``if_absent``, which
        # never replaces anything: a free key - the common case - then costs no lookup. An occupied
        # one fails the put before anything is committed and goes through ``_choose_key`` below,
        # the same decisions (reuse, overwrite, sibling) as when looking first.
        blind = data is not None and not opts.overwrite
        up: transfer.Uploaded | None = None
        for attempt in range(4 if blind else 3):  # another agent may take a free key between head and put
            if blind and attempt == 0:
                key, how = base, "create"
            else:
                key, how = self._choose_key(store, base, meta, opts.overwrite)
            if how == "reuse":
                break
            try:
                common = dict(metadata=to_metadata(meta), if_absent=how == "create", progress=opts.progress,
                              should_cancel=opts.should_cancel, retry=self.retry)
                if data is not None:
                    up = transfer.upload_bytes(store, key, data, **common)  # type: ignore[arg-type]
                else:
                    up = transfer.upload_fd(store, key, fd, size=size, chunk_size=self.chunk_size,
                                            part_size=part_size, expected_parts=parts if part_size else None,
                                            **common)  # type: ignore[arg-type]
            except AlreadyExists:
                continue
            except transfer.SourceChanged as exc:  # a part differed as it was sent
                if exc.committed:  # found after the store returned: the object is not the file
                    self._discard(store, key)
                return self._modified(opts, [*(self._changes(f, st0) or ["content"])], None)
            except DriverError:
                # A store that checks the declared size fails the put when the file grew or
                # shrank under us: report that as the modification it is.
                changes = self._changes(f, st0)
                if changes:
                    return self._modified(opts, changes, None)
                raise
            if up.sha256 != sha or up.size != size:  # changed between the hashing read and the upload
                self._discard(store, key)
                return self._modified(opts, ["content"], None)
            break
        else:
            raise _Outcome(ResultStatus.FAILED, f"object keys near {base!r} kept being taken")
        return _Sent(key, how, sha, size, part_size, up.info if up is not None and how != "reuse" else None)

    def _commit(self, f: _Open, old: HsmRecord | None, store: ObjectStore, opts: _MigrateOptions, sent: _Sent, *,
                durable: bool) -> _Outcome:
        """After the upload (and, for a deferred store, its flush): verify, check the file did not
        change, record ``premigrated`` and, for a full migration, release the blocks. With
        ``durable`` false the premigrated record is not fsynced here: the caller syncs the
        filesystem (``sync_roots``) before reporting (see ``stage_migrate``)."""
        st0, fd = f.st, f.fd
        key, how, sha, size, part_size = sent.key, sent.how, sent.sha256, sent.size, sent.part_size
        _failpoint("migrate:uploaded")
        try:
            info = transfer.verify_remote(store, key, sha256=sha, size=size, content=opts.verify_content,
                                          chunk_size=self.chunk_size, should_cancel=opts.should_cancel,
                                          retry=self.retry, part_size=part_size, uploaded=sent.info)
        except VerificationError:
            if how != "reuse":
                self._discard(store, key)
            raise
        changes = self._changes(f, st0)
        if changes:
            if how != "reuse":
                self._discard(store, key)
            return self._modified(opts, changes, key)
        check_transition(old.state if old else HsmState.UNMANAGED, HsmState.PREMIGRATED)
        record = HsmRecord(HsmState.PREMIGRATED, opts.target, key, sha, size, mtime_ns=st0.st_mtime_ns,
                           inode=st0.st_ino, ctime_ns=st0.st_ctime_ns, version=info.version, part_size=part_size)
        write_record(fd, record)
        if durable or not opts.premigrate:
            os.fsync(fd)
        _failpoint("migrate:premigrated")
        if opts.premigrate:
            return _Outcome(ResultStatus.PROCESSED, "premigrated (remote copy verified)", key)
        self._stub(f, record, opts.stub_size, st0.st_atime_ns)
        return _Outcome(ResultStatus.PROCESSED, "migrated (remote copy verified, blocks released)", key)

    def stage_migrate(self, path: str | os.PathLike[str], store: ObjectStore, *, premigrate: bool = False,
                      overwrite: bool = False, abort_missing: bool = False,
                      skip_modified_during_migrate: bool = False, stub_size: int = 0, target: str | None = None,
                      verify_content: bool = False, progress: ProgressFn | None = None,
                      should_cancel: CancelFn | None = None) -> StagedMigrate:
        """``migrate`` in two steps, for batches whose store defers durability
        (``ObjectStore.flush``): this call hashes and uploads a small file and stops there,
        keeping the file open and locked; ``StagedMigrate.commit`` - called only after
        ``store.flush()`` made the batch's objects durable - verifies, checks the file did not
        change and records the state. A premigrated record is then not fsynced file by file:
        the caller runs ``sync_roots`` once before reporting any outcome. The order per file is
        the same as ``migrate``'s (remote copy durable, then verified, then recorded, then
        released); only the fsyncs are shared. A path that needs no upload, or a file too large
        to read whole, is done at once as by ``migrate`` (``StagedMigrate.result``)."""
        target_name = target or store_name(store)
        opts = _MigrateOptions(premigrate, overwrite, skip_modified_during_migrate, max(0, stub_size), target_name,
                               verify_content, progress, should_cancel)
        shown = os.fsdecode(os.fspath(path))
        stack = ExitStack()
        staged: list[Callable[[], _Outcome]] = []

        def body(sp: SpacePath) -> _Outcome:
            f = stack.enter_context(self._open_regular(sp, write=not premigrate, verb="migrated"))
            record = self._settle_cut_release(f, read_record(f.fd))
            early = self._migrate_decision(f, record, store, opts)
            if early is not None:
                return early
            if f.st.st_size > self.chunk_size:
                return self._upload_open(f, record, store, opts)
            sent = self._send(f, store, opts)
            if isinstance(sent, _Outcome):
                return sent
            staged.append(lambda: self._commit(f, record, store, opts, sent, durable=False))
            return _Outcome(ResultStatus.PROCESSED, "uploaded; waiting for the store's flush")

        try:
            result = self._run(path, body, abort_missing=abort_missing)
        except BaseException:
            stack.close()
            raise
        if not staged or result.status != ResultStatus.PROCESSED:
            stack.close()
            return StagedMigrate(result, None, stack)
        return StagedMigrate(None, lambda: self._guard(shown, staged[0]), stack)

    def sync_roots(self) -> None:
        """Make every change on the space roots' filesystems durable (``syncfs`` on each, else
        ``sync``): the one flush that replaces per-file fsyncs of records (``stage_migrate``)."""
        seen: set[int] = set()
        for _, real in self._roots:
            fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                dev = os.fstat(fd).st_dev
                if dev not in seen:
                    seen.add(dev)
                    syncfs(fd)
            finally:
                os.close(fd)

    def _release_open(self, f: _Open, record: HsmRecord, store: ObjectStore, opts: _MigrateOptions) -> _Outcome:
        """Premigrated/hydrated -> migrated: prove the local bytes still hash to the record and
        the remote copy verifies, then stub. No upload."""
        if not self._holds_recorded_content(f, record, should_cancel=opts.should_cancel):
            raise _Outcome(ResultStatus.FAILED, "local content no longer matches the remote copy; not released",
                           record.key)
        transfer.verify_remote(store, record.key, sha256=record.sha256, size=record.size,
                               content=opts.verify_content, chunk_size=self.chunk_size,
                               should_cancel=opts.should_cancel, retry=self.retry, part_size=record.part_size)
        changes = self._changes(f, f.st)
        if changes:
            return self._modified(opts, changes, record.key)
        self._stub(f, record, opts.stub_size, f.st.st_atime_ns)
        return _Outcome(ResultStatus.PROCESSED, "released (remote copy verified)", record.key)

    def _changes(self, f: _Open, before: os.stat_result) -> list[str]:
        return changes_since(before, f.fd, f.dir_fd, f.name)

    def _modified(self, opts: _MigrateOptions, changes: list[str], key: str | None) -> _Outcome:
        status = ResultStatus.SKIPPED if opts.skip_modified_during_migrate else ResultStatus.FAILED
        return _Outcome(status, f"modified during migrate ({', '.join(changes)} changed); not released", key)

    def _stub(self, f: _Open, record: HsmRecord, stub_size: int, atime_ns: int) -> None:
        """Mark migrated (pending) first, then release the blocks: see the module docstring."""
        now = os.fstat(f.fd)
        if now.st_size != record.size or now.st_mtime_ns != record.mtime_ns:
            raise _Outcome(ResultStatus.FAILED, "modified before its blocks were released; not released",
                           record.key)
        stubbing = record.moved_to(HsmState.MIGRATED, pending=Pending.STUB, stub_size=min(stub_size, record.size))
        write_record(f.fd, stubbing)
        os.fsync(f.fd)
        _failpoint("stub:state-written")
        self._finish_stub(f, stubbing, atime_ns)

    def _finish_stub(self, f: _Open, record: HsmRecord, atime_ns: int) -> None:
        finish_stub(f.fd, record, atime_ns)
        os.fsync(f.fd)

    def _settle_cut_release(self, f: _Open, record: HsmRecord | None) -> HsmRecord | None:
        """The record to act on. A release cut short (migrated, pending stub) is left as it is
        when the file holds what the release itself leaves - as recorded (not yet punched, or
        punched with its times restored), punched (times not restored yet; or, on a filesystem
        that cannot punch, cut between truncating and re-extending), or not punched with the
        recorded content (only its times changed) - so the caller may finish it. A file written
        to in between is never punched or recalled over:
        - not punched, other content: its bytes are newer than the remote copy; it becomes a
          modified hydrated file (resident, the remote copy kept as the older version), so a
          migrate uploads the new content, a recall skips it, a release refuses it;
        - punched, then written to: it becomes a stub written to, which a recall refuses.
        """
        if record is None or record.state != HsmState.MIGRATED or record.pending != Pending.STUB:
            return record
        st = f.st
        if st.st_size == record.size and st.st_mtime_ns == record.mtime_ns:
            return record
        if not holds_data(f.fd, record.stub_size, min(st.st_size, record.size), chunk_size=self.chunk_size):
            if st.st_size in (record.size, record.stub_size):
                return record
            settled = replace(record, pending=None)  # punched, then written to
        elif st.st_size == record.size and self._holds_recorded_content(f, record):
            return record
        else:
            settled = record.moved_to(HsmState.HYDRATED, pending=None)  # size and mtime as recorded: stale
        write_record(f.fd, settled)
        os.fsync(f.fd)
        return settled

    def _holds_recorded_content(self, f: _Open, record: HsmRecord, *, should_cancel: CancelFn | None = None) -> bool:
        """Whether the open file's bytes hash to ``record`` (its checksum, plain or composite)."""
        summed = transfer.checksum_fd(f.fd, size=record.size, part_size=record.part_size,
                                      chunk_size=self.chunk_size, should_cancel=should_cancel)
        return summed.size == record.size and summed.sha256 == record.sha256

    def release(self, path: str | os.PathLike[str], stores: Stores, *, stub_size: int = 0,
                verify_content: bool = True, should_cancel: CancelFn | None = None) -> PathResult:
        """Premigrated/hydrated -> migrated, only if the file still hashes to its record and the
        remote copy verifies (re-read by default: time has passed since the upload)."""

        def body(sp: SpacePath) -> _Outcome:
            with self._open_regular(sp, write=True, verb="released") as f:
                record = self._settle_cut_release(f, read_record(f.fd))
                if record is None:
                    return _Outcome(ResultStatus.SKIPPED, "not managed: migrate it first")
                if record.state == HsmState.MIGRATED:
                    if record.pending == Pending.STUB:
                        self._finish_stub(f, record, f.st.st_atime_ns)
                        return _Outcome(ResultStatus.PROCESSED, "finished an interrupted release", record.key)
                    return _Outcome(ResultStatus.SKIPPED, "already migrated", record.key)
                if _is_stale(record, f.st):
                    return _Outcome(ResultStatus.FAILED, "modified since its upload; migrate to upload it again",
                                    record.key)
                opts = _MigrateOptions(False, False, False, max(0, stub_size), record.target, verify_content,
                                       None, should_cancel)
                return self._release_open(f, record, self._store_for(stores, record.target), opts)

        return self._run(path, body)

    # --- recall ------------------------------------------------------------------------------------
    def recall(self, path: str | os.PathLike[str], stores: Stores, *, verify: bool = True,
               delete_remote: bool = False, default_uid: int | None = None, default_gid: int | None = None,
               restore_times: bool = True, progress: ProgressFn | None = None,
               should_cancel: CancelFn | None = None) -> PathResult:
        """Bring a stub's bytes back in place; a resident file is a no-op (``skipped``).

        ``default_uid``/``default_gid`` replace an owner unknown on this system. ``delete_remote``
        removes the remote copy afterwards and always verifies first: the only other copy is never
        deleted on the strength of an unverified download.
        """

        def body(sp: SpacePath) -> _Outcome:
            with self._open_regular(sp, write=True, verb="recalled") as f:
                record = self._settle_cut_release(f, read_record(f.fd))
                if record is None:
                    return _Outcome(ResultStatus.SKIPPED, "already resident (not managed)")
                if record.state != HsmState.MIGRATED:
                    if delete_remote:
                        return self._delete_remote_open(f, record, self._store_for(stores, record.target))
                    return _Outcome(ResultStatus.SKIPPED, f"already resident ({record.state})", record.key)
                store = self._store_for(stores, record.target)
                return self._recall_open(f, record, store, verify=verify or delete_remote,
                                         delete_remote=delete_remote, default_uid=default_uid,
                                         default_gid=default_gid, restore_times=restore_times, progress=progress,
                                         should_cancel=should_cancel)

        return self._run(path, body)

    def recall_group(self, paths: Sequence[str | os.PathLike[str]], stores: Stores, *, verify: bool = True,
                     default_uid: int | None = None, default_gid: int | None = None, restore_times: bool = True,
                     only_target: str | None = None) -> list[PathResult | None]:
        """``recall`` for a group of small stubs, with durability shared by the group: each file
        takes ``recall``'s steps in ``recall``'s order, but step by step across the group - record
        the recall as pending, write and check the bytes, restore owner and times and record
        ``hydrated`` - and each step ends with one ``sync_roots`` in place of an ``fsync`` a file,
        so it is durable for every file before the next step starts. The files stay open and
        locked from the first step to the last. A path that is not a stub of at most
        ``chunk_size`` bytes (resident, large, missing...), or whose file is locked (perhaps by
        this group: the same file twice, a hard link), is handed to ``recall`` after the group.
        With ``only_target``, a file whose record names another target (or that has none) is
        left untouched, its result None: the caller takes it elsewhere."""
        results: list[PathResult | None] = [None] * len(paths)
        parents: dict[str, tuple[str, str]] = {}  # resolve's cache for the group
        untouched: set[int] = set()
        opened: list[_GroupRecall] = []  # every file of the group, open and locked until the end
        alone: list[int] = []
        try:
            for index, path in enumerate(paths):
                stack = ExitStack()
                shown = os.fsdecode(os.fspath(path))

                def begin(sp: SpacePath, index: int = index, shown: str = shown,
                          stack: ExitStack = stack) -> _Outcome | None:
                    try:
                        f = stack.enter_context(self._open_regular(sp, write=True, verb="recalled"))
                    except _Busy:  # perhaps by this group (the same file twice): alone, after it
                        alone.append(index)
                        return None
                    record = read_record(f.fd)
                    if only_target is not None and (record is None or record.target != only_target):
                        untouched.add(index)
                        return None
                    record = self._settle_cut_release(f, record)
                    if record is None or record.state != HsmState.MIGRATED or record.size > self.chunk_size:
                        alone.append(index)
                        return None
                    store = self._store_for(stores, record.target)
                    refused = self._begin_recall(f, record)
                    if refused is None:
                        opened.append(_GroupRecall(index, shown, f, record, store, stack))
                    return refused

                results[index] = self._step(shown, lambda path=path, begin=begin: begin(
                    self.resolve(path, parents=parents)))
                if not opened or opened[-1].index != index:  # not in the group: nothing to hold
                    stack.close()
            group = self._synced(opened, results, "the recall could not be recorded")
            _failpoint("recall-group:pending-synced")
            for item in group:
                item.fetched = self._step(item.shown, lambda item=item: self._fetch(
                    item.f, item.record, item.store, verify=verify, durable=False))
                results[item.index] = item.fetched if isinstance(item.fetched, PathResult) else None
            group = [item for item in group if results[item.index] is None]
            group = self._synced(group, results, "recalled bytes could not be made durable")
            _failpoint("recall-group:written-synced")
            for item in group:
                results[item.index] = self._guard(item.shown, lambda item=item: self._end_recall(
                    item.f, item.record, *item.fetched, verify=verify, default_uid=default_uid,
                    default_gid=default_gid, restore_times=restore_times))
            _failpoint("recall-group:recorded")
            recorded = [item for item in group if results[item.index].status == ResultStatus.PROCESSED]
            self._synced(recorded, results, "recalled, but the new state could not be made durable")
        finally:
            for item in opened:
                item.stack.close()
        for index in alone:
            results[index] = self.recall(paths[index], stores, verify=verify, default_uid=default_uid,
                                         default_gid=default_gid, restore_times=restore_times)
        assert all((r is None) == (i in untouched) for i, r in enumerate(results))
        return results

    def _step(self, shown: str, run: Callable[[], Any]) -> Any:
        """One step of a group's file: what ``run`` returned (None: go on), or its result when it
        ended the file's operation (an outcome returned or raised, an error)."""
        went: list[Any] = []

        def attempt() -> _Outcome:
            answer = run()
            if isinstance(answer, _Outcome):
                return answer
            went.append(answer)
            return _Outcome(ResultStatus.PROCESSED, "")

        result = self._guard(shown, attempt)
        return went[0] if went else result

    def _synced(self, group: list[_GroupRecall], results: list[PathResult | None],
                failure: str) -> list[_GroupRecall]:
        """``sync_roots`` after a step of ``recall_group``: the group, or none of it (each file
        then fails with ``failure``; its record still says the recall is pending, so a re-run
        starts it over)."""
        if not group:
            return group
        try:
            self.sync_roots()
        except OSError as exc:
            for item in group:
                results[item.index] = PathResult(item.shown, ResultStatus.FAILED,
                                                 f"{failure}: {exc.strerror or exc}", item.record.key)
            return []
        return group

    def _recall_open(self, f: _Open, record: HsmRecord, store: ObjectStore, *, verify: bool, delete_remote: bool,
                     default_uid: int | None, default_gid: int | None, restore_times: bool,
                     progress: ProgressFn | None, should_cancel: CancelFn | None) -> _Outcome:
        refused = self._begin_recall(f, record)
        if refused is not None:
            return refused
        os.fsync(f.fd)
        sha, count = self._fetch(f, record, store, verify=verify, durable=True, progress=progress,
                                 should_cancel=should_cancel)
        _failpoint("recall:written")
        done = self._end_recall(f, record, sha, count, verify=verify, default_uid=default_uid,
                                default_gid=default_gid, restore_times=restore_times)
        os.fsync(f.fd)
        if delete_remote and sha == record.sha256:
            transfer.call_with_retries(lambda: store.delete(record.key), self.retry)
            clear_record(f.fd)
            os.fsync(f.fd)
            return _Outcome(ResultStatus.PROCESSED, f"recalled {count} bytes (verified); remote copy deleted",
                            record.key)
        return done

    # The three steps of a recall, each made durable by the caller before the next (``fsync`` in
    # ``recall``, one ``sync_roots`` per step of a group in ``recall_group``).
    def _begin_recall(self, f: _Open, record: HsmRecord) -> _Outcome | None:
        """Record the recall as pending (None), or refuse a stub that was written to."""
        if record.pending is None and (f.st.st_size != record.size or f.st.st_mtime_ns != record.mtime_ns):
            return _Outcome(ResultStatus.FAILED, "the stub was written to after migration; not overwriting it",
                            record.key)
        write_record(f.fd, replace(record, pending=Pending.RECALL))
        return None

    def _fetch(self, f: _Open, record: HsmRecord, store: ObjectStore, *, verify: bool, durable: bool,
               progress: ProgressFn | None = None, should_cancel: CancelFn | None = None) -> tuple[str, int]:
        """Write the object's bytes into the stub and check them: (sha256, size). On any failure
        the stub is put back as it was, and the error raised."""
        st, fd = f.st, f.fd
        if st.st_size != record.size:
            os.ftruncate(fd, record.size)
        # Start from a clean stub: a recall that died earlier may have left bytes behind.
        release_blocks(fd, record.stub_size, record.size)
        _failpoint("recall:started")
        try:
            sha, count = transfer.download_to_fd(store, record.key, fd, size=record.size,
                                                 keep_prefix=record.stub_size, zeros_are_holes=True,
                                                 chunk_size=self.chunk_size, progress=progress,
                                                 should_cancel=should_cancel, retry=self.retry,
                                                 part_size=record.part_size)
            if count != record.size:
                raise VerificationError(f"object has {count} bytes, the file {record.size}", key=record.key)
            if verify and sha != record.sha256:
                raise VerificationError("recalled bytes do not match the checksum recorded at migration",
                                        key=record.key)
            if durable:
                os.fsync(fd)
        except BaseException:
            self._restub(f, record, st.st_atime_ns)
            raise
        return sha, count

    def _end_recall(self, f: _Open, record: HsmRecord, sha: str, count: int, *, verify: bool,
                    default_uid: int | None, default_gid: int | None, restore_times: bool) -> _Outcome:
        """Owner and times back, then the state: ``hydrated``, or unmanaged for bytes recalled
        unverified that differ from the record (the remote copy is then not vouched for)."""
        st, fd = f.st, f.fd
        self._apply_default_owner(fd, st, default_uid, default_gid)
        if restore_times:
            os.utime(fd, ns=(st.st_atime_ns, record.mtime_ns))
        mtime_ns = os.fstat(fd).st_mtime_ns
        if sha != record.sha256:  # only possible with verify=False
            clear_record(fd)
            return _Outcome(ResultStatus.PROCESSED, "recalled without verification; the checksum differs from "
                            "the one recorded at migration, so the file is now unmanaged", record.key)
        write_record(fd, record.moved_to(HsmState.HYDRATED, pending=None, mtime_ns=mtime_ns, inode=st.st_ino))
        return _Outcome(ResultStatus.PROCESSED, f"recalled {count} bytes" + (" (verified)" if verify else ""),
                        record.key)

    def _restub(self, f: _Open, record: HsmRecord, atime_ns: int) -> None:
        """After a failed recall: drop the partial bytes and put the stub back as it was."""
        try:
            release_blocks(f.fd, record.stub_size, record.size)
            os.utime(f.fd, ns=(atime_ns, record.mtime_ns))
            write_record(f.fd, replace(record, pending=None))
            os.fsync(f.fd)
        except OSError:
            pass  # the record still says pending=recall, so the next run is allowed to start over

    @staticmethod
    def _apply_default_owner(fd: int, st: os.stat_result, default_uid: int | None, default_gid: int | None) -> None:
        uid, gid = st.st_uid, st.st_gid
        if default_uid is not None and not _uid_exists(uid):
            uid = default_uid
        if default_gid is not None and not _gid_exists(gid):
            gid = default_gid
        if (uid, gid) != (st.st_uid, st.st_gid):
            os.fchown(fd, uid, gid)
            os.fchmod(fd, stat_mod.S_IMODE(st.st_mode))  # chown clears set-id bits

    def _store_for(self, stores: Stores, target: str) -> ObjectStore:
        if isinstance(stores, ObjectStore):
            return stores
        try:
            return stores[target]
        except KeyError:
            raise _Outcome(ResultStatus.FAILED, f"no store configured for target {target!r}") from None

    # --- delete remote -----------------------------------------------------------------------------
    def delete_remote(self, path: str | os.PathLike[str], stores: Stores) -> PathResult:
        """Delete the remote copy of a resident file and make it unmanaged. Refused for a stub,
        whose remote copy is the only one."""

        def body(sp: SpacePath) -> _Outcome:
            with self._open_regular(sp, write=False, verb="changed") as f:
                record = read_record(f.fd)
                if record is None:
                    return _Outcome(ResultStatus.SKIPPED, "not managed: no remote copy recorded")
                if record.state == HsmState.MIGRATED:
                    return _Outcome(ResultStatus.FAILED, "refused: the file is a stub and the remote object is "
                                    "its only copy; recall it first", record.key)
                return self._delete_remote_open(f, record, self._store_for(stores, record.target))

        return self._run(path, body)

    def _delete_remote_open(self, f: _Open, record: HsmRecord, store: ObjectStore) -> _Outcome:
        # Object first, record second: if the delete fails the record still names the key to retry.
        transfer.call_with_retries(lambda: store.delete(record.key), self.retry)
        check_transition(record.state, HsmState.UNMANAGED)
        clear_record(f.fd)
        os.fsync(f.fd)
        return _Outcome(ResultStatus.PROCESSED, "remote copy deleted; file is unmanaged", record.key)

    # --- reverse stub ------------------------------------------------------------------------------
    def reverse_stub(self, path: str | os.PathLike[str], store: ObjectStore, key: str, *, target: str | None = None,
                     default_uid: int | None = None, default_gid: int | None = None) -> PathResult:
        """Create a migrated stub at ``path`` for an existing object: original size (sparse),
        mode, owner and times from the object's metadata. Never replaces an existing file; a stub
        of the same object already there is a no-op. Missing parent directories are created."""
        target_name = target or store_name(store)

        def body(sp: SpacePath) -> _Outcome:
            if not sp.rel:
                raise PathRefused("cannot replace the space root")
            info = transfer.call_with_retries(lambda: store.head(key), self.retry)
            meta = parse_metadata(info.metadata)
            if info.size != meta.size:
                return _Outcome(ResultStatus.FAILED, "object size differs from its metadata", key)
            dir_fd = self._open_dir(sp.root, sp.parts[:-1], create=True)
            try:
                try:
                    if stat_mod.S_ISLNK(os.stat(sp.parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode):
                        self._refuse_escaping_symlink(sp)
                except FileNotFoundError:
                    pass
                return self._reverse_stub_at(dir_fd, sp.parts[-1], info, meta, key, target_name, default_uid,
                                             default_gid)
            finally:
                os.close(dir_fd)

        return self._run(path, body)

    def _reverse_stub_at(self, dir_fd: int, name: str, info: ObjectInfo, meta: ObjectMetadata, key: str,
                         target: str, default_uid: int | None, default_gid: int | None) -> _Outcome:
        if self._same_stub_exists(dir_fd, name, key, meta):
            return _Outcome(ResultStatus.SKIPPED, "already a stub of this object", key)
        tmp = f".hub-stub-{uuid.uuid4().hex[:12]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        try:
            os.ftruncate(fd, meta.size)  # sparse: no data blocks
            uid = meta.uid if default_uid is None or _uid_exists(meta.uid) else default_uid
            gid = meta.gid if default_gid is None or _gid_exists(meta.gid) else default_gid
            try:
                os.fchown(fd, uid, gid)
            except PermissionError:
                pass  # an unprivileged agent keeps its own ownership
            record = HsmRecord(HsmState.MIGRATED, target, key, meta.sha256, meta.size, mtime_ns=meta.mtime_ns,
                               inode=os.fstat(fd).st_ino, version=info.version, part_size=meta.part_size)
            check_transition(HsmState.UNMANAGED, HsmState.MIGRATED)
            write_record(fd, record)
            os.fchmod(fd, meta.mode)
            os.utime(fd, ns=(meta.atime_ns, meta.mtime_ns))
            os.fsync(fd)
            try:  # link() never replaces an existing name: the no-clobber guarantee
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                return _Outcome(ResultStatus.FAILED, "a file exists there; a reverse stub never replaces one", key)
        finally:
            os.close(fd)
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
        os.fsync(dir_fd)
        return _Outcome(ResultStatus.PROCESSED, "stub created", key)

    def _same_stub_exists(self, dir_fd: int, name: str, key: str, meta: ObjectMetadata) -> bool:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Outcome(ResultStatus.FAILED, "a symlink exists there; a reverse stub never replaces one",
                               key) from None
            raise
        try:
            record = read_record(fd) if stat_mod.S_ISREG(os.fstat(fd).st_mode) else None
        finally:
            os.close(fd)
        if record is not None and record.key == key and (record.sha256, record.part_size) == (meta.sha256,
                                                                                            meta.part_size):
            return True
        raise _Outcome(ResultStatus.FAILED, "a file exists there; a reverse stub never replaces one", key)


@dataclass(frozen=True)
class _MigrateOptions:
    premigrate: bool
    overwrite: bool
    skip_modified_during_migrate: bool
    stub_size: int
    target: str
    verify_content: bool
    progress: ProgressFn | None
    should_cancel: CancelFn | None


@dataclass(frozen=True)
class _Sent:
    """What ``_send`` uploaded: the key and how it was chosen, and the checksum of the bytes sent."""

    key: str
    how: str
    sha256: str
    size: int
    part_size: int | None
    info: ObjectInfo | None  # the put's answer (None when an earlier upload was reused)


@dataclass
class StagedMigrate:
    """A migration from ``PosixFilesystem.stage_migrate``: either finished (``result``) or uploaded
    and waiting - file open and locked - for ``commit`` after the store's flush. ``commit`` or
    ``abandon`` must be called exactly once for a waiting one (each closes the file)."""

    result: PathResult | None
    _commit: Callable[[], PathResult] | None
    _stack: ExitStack

    @property
    def waiting(self) -> bool:
        return self._commit is not None

    def commit(self) -> PathResult:
        """Verify, check, record (and release, for a full migration); then close the file."""
        assert self._commit is not None, "nothing to commit"
        try:
            return self._commit()
        finally:
            self._commit = None
            self._stack.close()

    def abandon(self) -> None:
        """Close the file without recording anything (it stays as it was: nothing is claimed).
        The uploaded object is left in place, unreferenced; a re-run reuses it once read back whole."""
        self._commit = None
        self._stack.close()


@dataclass
class _GroupRecall:
    """A file of ``recall_group`` between its steps (open and locked by ``stack``)."""

    index: int
    shown: str
    f: _Open
    record: HsmRecord
    store: ObjectStore
    stack: ExitStack
    fetched: Any = None  # (sha256, size) once its bytes are written


def finish_stub(fd: int, record: HsmRecord, atime_ns: int) -> None:
    """The second half of stubbing, once ``record`` (migrated, pending stub) is durable: release
    the blocks, restore the times, drop ``pending``. Not fsynced: the caller makes it durable (one
    file at a time, or a group's ``syncfs``)."""
    release_blocks(fd, record.stub_size, record.size)
    _failpoint("stub:punched")
    os.utime(fd, ns=(atime_ns, record.mtime_ns))
    write_record(fd, replace(record, pending=None))


def changes_since(before: os.stat_result, fd: int, dir_fd: int, name: str) -> list[str]:
    """What changed in the open file ``fd`` since ``before``: through the descriptor (size, mtime,
    ctime) and at its name in ``dir_fd`` (inode: the file was replaced, e.g. by an editor's
    rename). Empty: unchanged."""
    now = os.fstat(fd)
    changes = [what for what, a, b in (("size", before.st_size, now.st_size),
                                       ("mtime", before.st_mtime_ns, now.st_mtime_ns),
                                       ("ctime", before.st_ctime_ns, now.st_ctime_ns)) if a != b]
    try:
        at_path = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino
    except FileNotFoundError:
        at_path = None
    if at_path != before.st_ino:
        changes.append("inode")
    return changes


def syncfs(fd: int) -> None:
    """``syncfs(2)`` on the filesystem holding ``fd`` (``sync`` where the C library lacks it)."""
    fn = libc_function("syncfs", ctypes.c_int)
    if fn is None:
        os.sync()
        return
    if fn(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _same_upload(info: ObjectInfo, mine: ObjectMetadata) -> bool:
    """Whether ``info`` is the object this very file version uploaded (an interrupted earlier run)."""
    try:
        theirs = parse_metadata(info.metadata)
    except MetadataError:
        return False
    return info.size == mine.size and all(
        getattr(theirs, name) == getattr(mine, name)
        for name in ("sha256", "part_size", "size", "path", "inode", "ctime_ns"))


def _uid_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _gid_exists(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True
