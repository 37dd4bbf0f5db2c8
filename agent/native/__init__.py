"""The small-file lane's C core (``lanecore.c``): the lane's per-file steps for a whole group
in two calls (``stage``: open, lock, check, read, hash, write the object; ``commit``: verify,
check, record), outside the interpreter lock. The release stays in Python.

It is optional. ``make`` builds ``liblanecore.so.1`` beside this file (``make native``; it needs
a C compiler and OpenSSL's headers); where it is missing, switched off or fails to load,
``core()`` is None and the lane runs its Python loop, which follows the same protocol. The tests
run the lane both ways.

The object metadata and the HSM record the core writes are rendered from templates made here
with the real encoders (``to_metadata`` + ``encode_metadata``, ``HsmRecord.to_bytes``) on
sentinel values, so each format has one definition; tests compare the bytes.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from agent.drivers.fs import TMP_PREFIX, encode_metadata
from agent.drivers.fs import XATTR_NAME as OBJECT_XATTR
from agent.hsm.metadata import MAX_PATH_CHARS, ObjectMetadata, encode_path, to_metadata
from agent.hsm.state import XATTR_NAME as RECORD_XATTR
from agent.hsm.state import HsmRecord, HsmState, Pending

log = logging.getLogger(__name__)

#: Not named like a Python extension module (``*.so``), which ``import`` would try to load.
LIBRARY = Path(__file__).with_name("liblanecore.so.1")
ABI_VERSION = 5
#: The agent's ``small_file_native`` setting: "0" (or another no) never loads the core in this
#: process, whatever its callers ask (the lane then runs its Python loop).
ENV_SWITCH = "AGENT_SMALL_FILE_NATIVE"

STAGED, HAND_BACK, SHORT = 0, 1, 2  # lane_stage's answers
COMMITTED, GONE, REPLACED, MODIFIED, RECORD_FAILED = 0, 3, 4, 5, 6  # lane_commit's (and HAND_BACK)
#: lane_commit's ``changes`` bits, in the order ``changes_since`` names them.
CHANGES = (("size", 1), ("mtime", 2), ("ctime", 4), ("inode", 8))
_OUT = struct.Struct("<15q64s")  # struct lane_out
_COMMIT_OUT = struct.Struct("<6q")  # struct lane_commit_out

_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


class Seen(NamedTuple):
    """The source as the core saw it when it opened it (the fields the lane uses of a stat)."""

    st_ino: int
    st_dev: int
    st_mode: int
    st_uid: int
    st_gid: int
    st_size: int
    st_mtime_ns: int
    st_atime_ns: int
    st_ctime_ns: int


class Staged(NamedTuple):
    """One file's answer from the core. ``status``: STAGED (``fd`` is open and locked, the object
    is linked at its key), HAND_BACK (nothing done; ``err`` says why), SHORT (it read short: the
    file changed size; nothing uploaded)."""

    status: int
    fd: int
    err: int
    seen: Seen
    obj_fd: int  # STAGED: the object, open (its inode cannot be reused while it is); the caller closes it
    obj_ino: int
    obj_dev: int
    sha256: str
    raw: bytes  # the core's answer as it gave it (``commit`` passes it back)


def _template() -> bytes:
    """The metadata xattr with a 0x01 marker and a code where each per-file value goes."""
    numbers = {"s": 8000000000000000011, "u": 8000000000000000012, "g": 8000000000000000013,
               "M": 8000000000000000014, "A": 8000000000000000015, "I": 8000000000000000016,
               "C": 8000000000000000017}
    sha, mode, path = "5e" * 32, 0o6543, "LaneCorePathSentinel"
    raw = encode_metadata(to_metadata(ObjectMetadata(
        sha256=sha, size=numbers["s"], mode=mode, uid=numbers["u"], gid=numbers["g"], mtime_ns=numbers["M"],
        atime_ns=numbers["A"], path=path, inode=numbers["I"], ctime_ns=numbers["C"])))
    marks = {f'"{value}"': f'"\x01{code}"' for code, value in numbers.items()}
    marks.update({f'"{sha}"': '"\x01h"', f'"{format(mode, "04o")}"': '"\x01m"', f'"{encode_path(path)}"': '"\x01p"'})
    return _marked(raw, marks, "metadata")


def _marked(raw: bytes, marks: dict[str, str], what: str) -> bytes:
    """``raw`` with each sentinel text replaced by its marker; each must occur exactly once, or
    the template would be ambiguous."""
    for text, mark in marks.items():
        if raw.count(text.encode()) != 1:
            raise RuntimeError(f"cannot make the {what} template: {text} is not in it exactly once")
        raw = raw.replace(text.encode(), mark.encode())
    return raw


class Recorded(NamedTuple):
    """The file just after its record was written."""

    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int


class Committed(NamedTuple):
    """One file's answer from ``LaneCore.commit``: ``status`` COMMITTED (recorded), HAND_BACK
    (its object removed, nothing recorded), GONE or RECORD_FAILED (``err``), REPLACED (another
    object is at the key), MODIFIED (``changed`` names what; its object removed)."""

    status: int
    err: int
    changed: tuple[str, ...]
    recorded: Recorded


class ToCommit(NamedTuple):
    """What ``LaneCore.commit`` needs of one staged file."""

    staged: bytes  # ``Staged.raw``
    src_dir: int
    name: str
    obj_dir: int
    obj_name: str
    key: str


def _record_template(target: str, premigrate: bool) -> bytes:
    """``HsmRecord.to_bytes`` with a 0x01 marker and a code where each per-file value goes."""
    numbers = {"s": 8000000000000000011, "M": 8000000000000000014, "I": 8000000000000000016,
               "C": 8000000000000000017, "S": 8000000000000000001}
    sha, key = "5e" * 32, "LaneCoreKeySentinel"
    state, pending = (HsmState.PREMIGRATED, None) if premigrate else (HsmState.MIGRATED, Pending.STUB)
    raw = HsmRecord(state, target, key, sha, numbers["s"], mtime_ns=numbers["M"], inode=numbers["I"],
                    ctime_ns=numbers["C"], pending=pending, stub_size=0 if premigrate else numbers["S"]).to_bytes()
    marks = {f":{value}": f":\x01{code}" for code, value in numbers.items() if not (premigrate and code == "S")}
    marks.update({f'"{sha}"': '"\x01h"', _escape(key): '"\x01k"'})
    return _marked(raw, marks, "record")


class LaneCore:
    """The loaded library and what every call passes unchanged."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._stage = lib.lane_stage
        self._stage.restype = ctypes.c_int
        self._stage.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                ctypes.c_int64, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
        self._commit = lib.lane_commit
        self._commit.restype = ctypes.c_int
        self._commit.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                 ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int64,
                                 ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
        self._template = _template()
        self._record_templates: dict[tuple[str, bool], bytes | None] = {}
        self._record_xattr = os.fsencode(RECORD_XATTR)
        self._object_xattr = os.fsencode(OBJECT_XATTR)
        self._tmp_prefix = os.fsencode(TMP_PREFIX)

    @staticmethod
    def metadata_path(rel: str) -> bytes | None:
        """``rel`` as the template's path value, or None when ``to_metadata`` would leave the path
        out (too long): the core's template always has one, so such a file takes the Python loop."""
        encoded = encode_path(rel)  # percent-encoded: nothing in it needs a JSON escape
        return None if len(encoded) > MAX_PATH_CHARS else encoded.encode("ascii")

    def stage(self, src_dirs: Sequence[int], names: Sequence[bytes], obj_dirs: Sequence[int],
              obj_names: Sequence[bytes], paths: Sequence[bytes], *, open_flags: int, noatime: int,
              limit: int) -> list[Staged]:
        """Stage files (see ``lane_stage`` in ``lanecore.c``); one answer per file, in order."""
        count = len(names)
        if count == 0:
            return []
        out = ctypes.create_string_buffer(_OUT.size * count)
        rc = self._stage(count, struct.pack(f"<{count}i", *src_dirs), b"\0".join(names) + b"\0",
                         struct.pack(f"<{count}i", *obj_dirs), b"\0".join(obj_names) + b"\0",
                         b"\0".join(paths) + b"\0", self._template, len(self._template), open_flags, noatime,
                         limit, self._record_xattr, self._object_xattr, self._tmp_prefix, out)
        if rc != 0:
            log.warning("the lane's C core ran out of memory; the rest of the group goes the Python way")
        answers = []
        raw, width = out.raw, _OUT.size
        for at, (status, fd, err, ino, dev, mode, uid, gid, size, mtime, atime, ctime, obj_fd, obj_ino, obj_dev,
                 sha) in enumerate(_OUT.iter_unpack(raw)):
            answers.append(Staged(status, fd, err, Seen(ino, dev, mode, uid, gid, size, mtime, atime, ctime),
                                  obj_fd, obj_ino, obj_dev, sha.decode("ascii"), raw[at * width:(at + 1) * width]))
        return answers

    def can_record(self, target: str, premigrate: bool) -> bool:
        """Whether ``commit`` can write records for ``target`` (its name could, in theory, make
        the template ambiguous; then the lane keeps to its Python loop for that target)."""
        return self._record_template(target, premigrate) is not None

    def _record_template(self, target: str, premigrate: bool) -> bytes | None:
        key = (target, premigrate)
        if key not in self._record_templates:
            try:
                self._record_templates[key] = _record_template(target, premigrate)
            except RuntimeError as exc:
                log.warning("the lane's C core will not record for target %r: %s", target, exc)
                self._record_templates[key] = None
        return self._record_templates[key]

    def commit(self, files: Sequence[ToCommit], *, target: str, premigrate: bool,
               stub_limit: int) -> list[Committed]:
        """Verify, check and record files staged by ``stage`` (see ``lane_commit`` in
        ``lanecore.c``); one answer per file, in order. It closes every object descriptor, and
        for ``premigrate`` (nothing to release after) every source descriptor. The records are
        what ``HsmRecord.to_bytes`` gives for ``premigrated``, or ``migrated`` pending ``stub``
        with ``min(stub_limit, size)`` kept."""
        count = len(files)
        if count == 0:
            return []
        template = self._record_template(target, premigrate)
        if template is None:
            raise ValueError(f"no record template for target {target!r} (see can_record)")
        packed = b"".join(f.staged for f in files)
        out = ctypes.create_string_buffer(_COMMIT_OUT.size * count)
        rc = self._commit(count, packed, struct.pack(f"<{count}i", *(f.src_dir for f in files)),
                          b"\0".join(os.fsencode(f.name) for f in files) + b"\0",
                          struct.pack(f"<{count}i", *(f.obj_dir for f in files)),
                          b"\0".join(os.fsencode(f.obj_name) for f in files) + b"\0",
                          b"\0".join(_escape(f.key)[1:-1].encode("ascii") for f in files) + b"\0",
                          template, len(template), 0 if premigrate else stub_limit, 0 if premigrate else 1,
                          1 if premigrate else 0, self._record_xattr, out)
        if rc != 0:
            log.warning("the lane's C core ran out of memory; some files were handed back")
        return [Committed(status, err, tuple(name for name, bit in CHANGES if changes & bit) if changes else (),
                          Recorded(size, mtime, ctime))
                for status, err, changes, size, mtime, ctime in _COMMIT_OUT.iter_unpack(out.raw)]


@functools.cache
def core() -> LaneCore | None:
    """The C core, or None (not built, switched off with ``AGENT_SMALL_FILE_NATIVE=0``, or unloadable)."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off") or not LIBRARY.exists():
        return None
    try:
        lib = ctypes.CDLL(str(LIBRARY))
        if lib.lane_abi_version() != ABI_VERSION:
            log.warning("%s is from another version of the agent; rebuild it with `make native`", LIBRARY)
            return None
        return LaneCore(lib)
    except (OSError, AttributeError, RuntimeError) as exc:
        log.warning("the lane's C core could not be loaded (%s); the lane runs in Python", exc)
        return None
