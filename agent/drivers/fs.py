"""A POSIX folder as an object store: the ``fs`` target (``migration_target_folder``).

Keys map to paths under the folder, one ``/``-separated segment per directory level. Nothing
can escape the folder: keys with ``.``/``..`` or empty segments, a leading or trailing ``/``,
NUL or control characters are refused with ``PermanentError``, and every path is walked one
directory at a time from a descriptor of the folder with ``O_NOFOLLOW``, so a symlink planted
inside the folder is never followed (symlinks and other non-regular files are not objects).
Segments starting with ``.hub-`` are reserved for the driver's temporary and metadata files,
are refused as keys and are hidden from listings.

Atomicity: ``put`` writes a temporary file in the destination directory, fsyncs it, then
renames it over the key (``rename(2)`` replaces atomically) and fsyncs the directory, so a
reader sees the old object or the new one, never a partial one, and a crash leaves at worst a
hidden ``.hub-tmp-*`` file. ``if_absent`` uses ``link(2)``, which fails if the name exists, so it
is atomic too. A file and a directory cannot share a name, so the keys ``a`` and ``a/b`` cannot
both exist here (the second put fails with ``PermanentError``).

Metadata lives in one of two places, chosen by ``advanced_settings["metadata"]``:

* ``xattr`` - a ``user.hub.metadata`` extended attribute holding JSON, set on the temporary
  file before the rename, so data and metadata appear together atomically. The default when the
  folder's filesystem supports user xattrs (ext4, xfs, btrfs, tmpfs, NFS 4.2).
* ``sidecar`` - for filesystems without user xattrs: a hidden JSON file next to the object,
  named after a hash of the object's name and the inode of the file it describes, written and
  fsynced before the data is renamed into place. A sidecar only applies to the inode (and size
  and mtime) it names, so a crash between the two renames leaves the previous object with its
  previous metadata and an orphan sidecar (hidden, harmless).
* ``auto`` (default) - ``xattr`` if a probe in the folder succeeds, else ``sidecar``.

Deferred durability (``defer_durability``, which a batch of the agent's small-file migrations
asks for): ``put`` then skips its two fsyncs and ``flush`` makes everything written since durable
with one ``syncfs`` of the folder's filesystem. Until that flush, a crash may leave an object at
its key that is shorter or emptier than its metadata says; the agent writes no record pointing at
an object before the flush, and reuses an object of its own only after reading it back whole.

Other settings: ``fsync`` (default true; false trades crash safety for speed), ``create_folder``
(default false: a missing folder is ``NotFound``, like a missing bucket), ``chunk_size``.
Memory: one ``chunk_size`` buffer per transfer. Instances are thread-safe.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import stat
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

from agent.drivers.base import (
    DEFAULT_CHUNK,
    AccessDenied,
    AlreadyExists,
    CheckedReader,
    DriverError,
    ListPage,
    NotFound,
    ObjectInfo,
    ObjectStore,
    PermanentError,
    TransientError,
    as_bool,
    as_int,
    check_key,
    check_metadata,
    level_prefix,
    make_page,
    skip_for_marker,
)

RESERVED = ".hub-"
TMP_PREFIX = ".hub-tmp-"
SIDECAR_PREFIX = ".hub-meta-"
XATTR_NAME = "user.hub.metadata"
NAME_MAX = 255
METADATA_MODES = ("auto", "xattr", "sidecar")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TRANSIENT_ERRNOS = {errno.EIO, errno.ETIMEDOUT, errno.ESTALE, errno.EAGAIN, errno.EBUSY, errno.EINTR,
                     errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNRESET}


_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def encode_metadata(metadata: Mapping[str, str]) -> bytes:
    """The metadata xattr's value: what ``json.dumps(metadata, sort_keys=True)`` gives, built
    without setting up an encoder per object (measurable for thousands of small objects)."""
    return ("{" + ", ".join(f"{_escape(k)}: {_escape(v)}" for k, v in sorted(metadata.items())) + "}").encode()


def _map_os_error(error: OSError, what: str, key: str | None) -> DriverError:
    """The driver error for an ``OSError`` (the path stays out of the message: the key says it)."""
    reason = f"{what}: {error.strerror or error}"
    if error.errno == errno.ENOENT:
        return NotFound(reason, key=key)
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AccessDenied(reason, key=key)
    if error.errno in _TRANSIENT_ERRNOS:
        return TransientError(reason, key=key)
    return PermanentError(reason, key=key)


class FolderStore(ObjectStore):
    """Objects as files under ``root`` (see the module docstring)."""

    storage_type = "fs"

    def __init__(self, root: str | os.PathLike[str], *, metadata: str = "auto", fsync: bool = True,
                 create_folder: bool = False, chunk_size: int = DEFAULT_CHUNK) -> None:
        if metadata not in METADATA_MODES:
            raise PermanentError(f"metadata must be one of {', '.join(METADATA_MODES)}, not {metadata!r}")
        self.root = os.path.abspath(os.fspath(root))
        self.fsync = fsync
        self.create_folder = create_folder
        self.chunk_size = chunk_size
        self._metadata_mode = metadata
        self._lock = threading.Lock()
        self._deferred = False

    @classmethod
    def from_bucket(cls, bucket: Mapping[str, Any]) -> FolderStore:
        folder = str(bucket.get("migration_target_folder") or "")
        if not folder or not os.path.isabs(folder):
            raise PermanentError("an fs bucket needs an absolute migration_target_folder")
        advanced = bucket.get("advanced_settings") or {}
        return cls(folder, metadata=str(advanced.get("metadata") or "auto"),
                   fsync=as_bool(advanced.get("fsync"), True),
                   create_folder=as_bool(advanced.get("create_folder"), False),
                   chunk_size=as_int(advanced.get("chunk_size"), DEFAULT_CHUNK, minimum=4096))

    def __repr__(self) -> str:
        return f"FolderStore({self.root!r}, metadata={self._metadata_mode!r})"

    def defer_durability(self) -> bool:
        """From now on ``put`` does not fsync; ``flush`` does, once for everything (see the module
        docstring). False (nothing changes) when the folder is configured without fsync at all."""
        self._deferred = self.fsync
        return self._deferred

    def flush(self) -> None:
        if not self._deferred:
            return
        from agent.drivers.posix import syncfs

        root = self._open_root()
        try:
            syncfs(root)
        except OSError as error:
            raise _map_os_error(error, "cannot flush the target folder", None) from None
        finally:
            os.close(root)

    # --- paths ----------------------------------------------------------------------------------

    @staticmethod
    def _segments(key: str) -> list[str]:
        check_key(key)
        segments = key.split("/")
        for segment in segments:
            if segment in ("", ".", ".."):
                raise PermanentError("a folder target key must not have empty, '.' or '..' segments", key=key)
            if segment.startswith(RESERVED):
                raise PermanentError(f"key segments starting with {RESERVED!r} are reserved", key=key)
            if len(segment.encode("utf-8")) > NAME_MAX:
                raise PermanentError(f"a key segment must be at most {NAME_MAX} bytes", key=key)
        return segments

    def _open_root(self) -> int:
        try:
            return os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError:
            if not self.create_folder:
                raise NotFound("the target folder does not exist") from None
        try:
            os.makedirs(self.root, exist_ok=True)
            return os.open(self.root, _DIR_FLAGS)
        except OSError as error:
            raise _map_os_error(error, "cannot create the target folder", None) from None

    def _open_dir(self, segments: list[str], *, create: bool, key: str | None) -> int:
        """A descriptor of the directory ``segments`` under the root, walked without symlinks.

        With ``create``, missing directories are made; a concurrent delete may prune one of them
        before we get into it, so the walk starts over a few times before giving up.
        """
        for _ in range(5):
            try:
                return self._walk_dirs(segments, create=create, key=key)
            except FileNotFoundError:
                if not create:
                    raise NotFound("no such object", key=key) from None
        raise TransientError("the folder kept being removed while the object was written", key=key)

    def _walk_dirs(self, segments: list[str], *, create: bool, key: str | None) -> int:
        fd = self._open_root()
        try:
            for segment in segments:
                try:
                    child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(segment, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except FileNotFoundError:
            os.close(fd)
            raise
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.ENOTDIR, errno.ELOOP):
                if create:
                    raise PermanentError("a segment of the key is a file or a symlink", key=key) from None
                raise NotFound("no such object", key=key) from None
            raise _map_os_error(error, "cannot open the folder", key) from None
        return fd

    # --- metadata -------------------------------------------------------------------------------

    def metadata_mode(self) -> str:
        """``xattr`` or ``sidecar``: where this folder keeps objects' metadata (probed once)."""
        return self._mode()

    def _mode(self) -> str:
        with self._lock:
            if self._metadata_mode == "auto":
                self._metadata_mode = "xattr" if self._probe_xattr() else "sidecar"
            return self._metadata_mode

    def _probe_xattr(self) -> bool:
        root = self._open_root()
        name = f"{TMP_PREFIX}probe-{secrets.token_hex(8)}"
        try:
            fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=root)
            try:
                os.setxattr(fd, XATTR_NAME, b"{}")
                return True
            except OSError as error:
                if error.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                    return False
                raise _map_os_error(error, "cannot probe extended attributes", None) from None
            finally:
                os.close(fd)
                os.unlink(name, dir_fd=root)
        except OSError as error:
            raise _map_os_error(error, "cannot write to the target folder", None) from None
        finally:
            os.close(root)

    @staticmethod
    def _sidecar_name(name: str, ino: int) -> str:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        return f"{SIDECAR_PREFIX}{digest}-{ino:x}"

    def _write_sidecar(self, dir_fd: int, name: str, st: os.stat_result, metadata: dict[str, str]) -> None:
        body = json.dumps({"name": name, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                           "metadata": metadata}, sort_keys=True).encode()
        self._write_file(dir_fd, self._sidecar_name(name, st.st_ino), io.BytesIO(body), key=None)

    def _read_metadata(self, dir_fd: int, name: str, fd: int, st: os.stat_result) -> dict[str, str]:
        if self._mode() == "xattr":
            try:
                raw = os.getxattr(fd, XATTR_NAME)
            except OSError as error:
                if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                    return {}
                raise
        else:
            try:
                with open(self._sidecar_name(name, st.st_ino), "rb",
                          opener=lambda path, flags: os.open(path, _READ_FLAGS, dir_fd=dir_fd)) as handle:
                    record = json.loads(handle.read())
            except FileNotFoundError:
                return {}
            if (record.get("name"), record.get("ino"), record.get("size"), record.get("mtime_ns")) != (
                    name, st.st_ino, st.st_size, st.st_mtime_ns):
                return {}
            raw = json.dumps(record.get("metadata") or {}).encode()
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def _drop_sidecar(self, dir_fd: int, name: str, ino: int) -> None:
        try:
            os.unlink(self._sidecar_name(name, ino), dir_fd=dir_fd)
        except FileNotFoundError:
            pass

    # --- writing --------------------------------------------------------------------------------

    @staticmethod
    def _create_temp(dir_fd: int) -> tuple[str, int]:
        name = f"{TMP_PREFIX}{secrets.token_hex(12)}"
        return name, os.open(name, _CREATE_FLAGS, 0o666, dir_fd=dir_fd)

    def _write_file(self, dir_fd: int, name: str, reader: BinaryIO, *, key: str | None,
                    metadata: dict[str, str] | None = None, if_absent: bool = False,
                    temp: tuple[str, int] | None = None) -> os.stat_result:
        """Write ``reader`` to a temporary file, then move it to ``name`` (see the module docstring)."""
        tmp, fd = temp or self._create_temp(dir_fd)
        try:
            try:
                while chunk := _read_source(reader, self.chunk_size):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                if metadata and self._mode() == "xattr":
                    try:
                        os.setxattr(fd, XATTR_NAME, encode_metadata(metadata))
                    except OSError as error:
                        if error.errno in (errno.E2BIG, errno.ERANGE, errno.ENOSPC):
                            raise PermanentError("the metadata is too large for an extended attribute",
                                                 key=key) from None
                        raise
                if self.fsync and not self._deferred:
                    os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if metadata and self._mode() == "sidecar":
                self._write_sidecar(dir_fd, name, st, metadata)
            if if_absent:
                try:
                    os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    if metadata and self._mode() == "sidecar":
                        self._drop_sidecar(dir_fd, name, st.st_ino)
                    raise AlreadyExists("object exists", key=key) from None
                os.unlink(tmp, dir_fd=dir_fd)
            else:
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise
        if self.fsync and not self._deferred:
            os.fsync(dir_fd)
        return st

    def _open_for_write(self, segments: list[str], key: str) -> tuple[int, tuple[str, int]]:
        """The key's directory (made as needed) and a new temporary file in it."""
        # A concurrent delete may remove an empty directory between our mkdir and our create;
        # nothing has been read from the caller's stream yet, so trying again is safe.
        for _ in range(3):
            dir_fd = self._open_dir(segments[:-1], create=True, key=key)
            try:
                return dir_fd, self._create_temp(dir_fd)
            except FileNotFoundError:
                os.close(dir_fd)
            except OSError as error:
                os.close(dir_fd)
                raise _map_os_error(error, "cannot write to the folder", key) from None
        raise TransientError("the folder was removed while the object was written", key=key)

    def _store(self, key: str, reader: BinaryIO, metadata: dict[str, str], if_absent: bool) -> ObjectInfo:
        segments = self._segments(key)
        name = segments[-1]
        dir_fd, temp = self._open_for_write(segments, key)
        try:
            try:
                previous = self._lstat(dir_fd, name, key)
                if previous is not None and stat.S_ISDIR(previous.st_mode):
                    raise PermanentError("the key names a folder (keys under it exist)", key=key)
                if if_absent and previous is not None:
                    raise AlreadyExists("object exists", key=key)
            except BaseException:
                os.close(temp[1])
                os.unlink(temp[0], dir_fd=dir_fd)
                raise
            try:
                st = self._write_file(dir_fd, name, reader, key=key, metadata=metadata, if_absent=if_absent,
                                      temp=temp)
            except _SourceFailed as failure:
                raise failure.error from None  # the caller's stream failed: theirs to handle
            except IsADirectoryError:
                raise PermanentError("the key names a folder (keys under it exist)", key=key) from None
            except OSError as error:
                raise _map_os_error(error, "cannot write the object", key) from None
            if previous is not None and self._mode() == "sidecar" and previous.st_ino != st.st_ino:
                self._drop_sidecar(dir_fd, name, previous.st_ino)
            return self._info(key, st, metadata)
        finally:
            os.close(dir_fd)

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            metadata: Mapping[str, str] | None = None, if_absent: bool = False) -> ObjectInfo:
        checked = check_metadata(metadata)
        return self._store(key, CheckedReader(stream, size, key=key), checked, if_absent)

    def copy(self, source_key: str, dest_key: str, *, metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        checked = None if metadata is None else check_metadata(metadata)
        self._segments(dest_key)
        handle, source_metadata, st = self._open(source_key, with_metadata=checked is None)
        with handle:
            try:
                return self._store(dest_key, CheckedReader(handle, st.st_size, key=source_key),
                                   source_metadata if checked is None else checked, False)
            except OSError as error:  # reading the source file failed
                raise _map_os_error(error, "cannot read the source object", source_key) from None

    # --- reading --------------------------------------------------------------------------------

    @staticmethod
    def _lstat(dir_fd: int, name: str, key: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise _map_os_error(error, "cannot stat the object", key) from None

    @staticmethod
    def _info(key: str, st: os.stat_result, metadata: Mapping[str, str]) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size, etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
                          modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC), metadata=dict(metadata))

    def _open(self, key: str, *, with_metadata: bool) -> tuple[io.FileIO, dict[str, str], os.stat_result]:
        """The object's open file (regular files only, never through a symlink), metadata and stat.

        The caller closes the file.
        """
        segments = self._segments(key)
        dir_fd = self._open_dir(segments[:-1], create=False, key=key)
        try:
            try:
                handle = io.FileIO(os.open(segments[-1], _READ_FLAGS, dir_fd=dir_fd), "rb", closefd=True)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
                    raise NotFound("no such object", key=key) from None
                raise _map_os_error(error, "cannot open the object", key) from None
            try:
                st = os.fstat(handle.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise NotFound("no such object", key=key)
                metadata = self._read_metadata(dir_fd, segments[-1], handle.fileno(), st) if with_metadata else {}
            except OSError as error:
                handle.close()
                raise _map_os_error(error, "cannot read the object's metadata", key) from None
            except BaseException:
                handle.close()
                raise
            return handle, metadata, st
        finally:
            os.close(dir_fd)

    def head(self, key: str) -> ObjectInfo:
        handle, metadata, st = self._open(key, with_metadata=True)
        handle.close()
        return self._info(key, st, metadata)

    def open_read(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        if offset < 0 or (length is not None and length < 0):
            raise PermanentError("offset and length must not be negative", key=key)
        handle, _, st = self._open(key, with_metadata=False)
        end = st.st_size if length is None else min(st.st_size, offset + length)
        if offset:
            handle.seek(min(offset, st.st_size))
        return io.BufferedReader(_Window(handle, max(0, end - offset), key), buffer_size=self.chunk_size)

    # --- listing --------------------------------------------------------------------------------

    def list(self, prefix: str = "", *, marker: str = "", max_items: int = 1000,
             delimiter: str | None = None) -> ListPage:
        if max_items < 1:
            raise PermanentError("max_items must be at least 1")
        start = prefix.split("/")[:-1]  # the deepest folder every listed key lies in
        if any(s in ("", ".", "..") or s.startswith(RESERVED) for s in start):
            self._open_root()  # still NotFound for a missing folder
            return ListPage([], [], None)
        try:
            dir_fd = self._open_dir(start, create=False, key=None)
        except NotFound:
            os.close(self._open_root())  # a missing folder is NotFound; a missing prefix lists nothing
            return ListPage([], [], None)
        entries: list[tuple[str, ObjectInfo | None]] = []
        try:
            base = "".join(s + "/" for s in start)
            for key, st in self._walk(dir_fd, base, prefix, marker, delimiter):
                common = key if st is None else level_prefix(key, prefix, delimiter)
                entry = common or key
                if skip_for_marker(entry, marker, prefix, delimiter) or (entries and entries[-1][0] == entry):
                    continue
                if len(entries) == max_items:
                    return make_page(entries, entries[-1][0])
                entries.append((entry, None if common or st is None else self._info(key, st, {})))
        except OSError as error:
            raise _map_os_error(error, "cannot list the folder", None) from None
        finally:
            os.close(dir_fd)
        return make_page(entries, None)

    def _walk(self, dir_fd: int, base: str, prefix: str, marker: str,
              delimiter: str | None) -> Iterator[tuple[str, os.stat_result | None]]:
        """Keys (with their stat) under ``dir_fd`` in key order; with the ``/`` delimiter, folders
        below the listing's level come out once, as ``(prefix, None)``, without being walked."""
        children: list[tuple[str, str, bool]] = []
        with os.scandir(dir_fd) as scan:
            for entry in scan:
                if entry.name.startswith(RESERVED):
                    continue
                try:
                    entry.name.encode("utf-8")
                except UnicodeEncodeError:  # not a name any key can have
                    continue
                if entry.is_dir(follow_symlinks=False):
                    children.append((entry.name + "/", entry.name, True))
                elif entry.is_file(follow_symlinks=False):
                    children.append((entry.name, entry.name, False))
        # A folder sorts as its name plus "/", which is where its keys sort among its siblings.
        children.sort()
        for sort_name, name, is_dir in children:
            key = base + sort_name
            if not is_dir:
                if key.startswith(prefix) and key > marker:
                    try:
                        yield key, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:  # deleted while we list
                        continue
                continue
            if not (key.startswith(prefix) or prefix.startswith(key)):
                continue
            if key <= marker and not marker.startswith(key):
                continue  # every key in this folder sorts before the marker
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                if delimiter == "/" and key.startswith(prefix) and len(key) > len(prefix):
                    if not skip_for_marker(key, marker, prefix, delimiter) and self._has_objects(child):
                        yield key, None
                    continue
                yield from self._walk(child, key, prefix, marker, delimiter)
            finally:
                os.close(child)

    def _has_objects(self, dir_fd: int) -> bool:
        with os.scandir(dir_fd) as scan:
            entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in scan]
        for name, is_dir, is_file in entries:
            if name.startswith(RESERVED):
                continue
            if is_file:
                return True
            if is_dir:
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue
                try:
                    if self._has_objects(child):
                        return True
                finally:
                    os.close(child)
        return False

    # --- deleting -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        segments = self._segments(key)
        try:
            dir_fd = self._open_dir(segments[:-1], create=False, key=key)
        except NotFound:
            os.close(self._open_root())  # a missing folder is NotFound; a missing key is not an error
            return
        try:
            st = self._lstat(dir_fd, segments[-1], key)
            if st is None or not stat.S_ISREG(st.st_mode):
                return
            try:
                os.unlink(segments[-1], dir_fd=dir_fd)
            except FileNotFoundError:
                return
            except OSError as error:
                raise _map_os_error(error, "cannot delete the object", key) from None
            if self._mode() == "sidecar":
                self._drop_sidecar(dir_fd, segments[-1], st.st_ino)
        finally:
            os.close(dir_fd)
        self._prune(segments[:-1])

    def _prune(self, segments: list[str]) -> None:
        """Remove the folders a delete left empty, deepest first, so listings stay cheap."""
        while segments:
            try:
                parent = self._open_dir(segments[:-1], create=False, key=None)
            except DriverError:
                return
            try:
                os.rmdir(segments[-1], dir_fd=parent)
            except OSError:
                return  # not empty (or gone, or not ours to remove): stop here
            finally:
                os.close(parent)
            segments = segments[:-1]


class _SourceFailed(Exception):
    """Carries an exception raised by the caller's stream past this module's ``OSError`` mapping."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _read_source(reader: BinaryIO, size: int) -> bytes:
    try:
        return reader.read(size)
    except DriverError:
        raise
    except Exception as error:
        raise _SourceFailed(error) from error


class _Window(io.RawIOBase):
    """``length`` bytes of an open file from its current position; read errors are driver errors."""

    def __init__(self, handle: io.FileIO, length: int, key: str) -> None:
        super().__init__()
        self._handle = handle
        self._left = length
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._left)]
        try:
            n = self._handle.readinto(view) or 0
        except OSError as error:
            raise _map_os_error(error, "cannot read the object", self._key) from None
        self._left -= n
        return n

    def close(self) -> None:
        self._handle.close()
        super().close()

