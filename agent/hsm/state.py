"""The per-file HSM record, kept in one user extended attribute on the file itself.

Why an xattr: the record (which remote object holds the bytes, and the checksum that proves it)
must travel with the file through renames and hard links and survive an agent restart without a
database. It is stored as one JSON value under ``user.hub.hsm`` so that a single ``setxattr``
replaces it atomically: a crash leaves either the old record or the new one, never a mix.

States (absence of the attribute *is* ``unmanaged``; it is never written):

* ``unmanaged``   - no remote copy is known. Set by: nothing (the default), ``delete_remote``.
* ``premigrated`` - content local and an identical, verified remote copy. Set by ``migrate``
  after the upload verified (with ``premigrate=True`` it stops here).
* ``migrated``    - a stub: original size and metadata, data blocks released, the remote copy is
  the only full copy. Set by ``migrate``/``release`` *before* the blocks are released (so a crash
  can only leave a resident file marked migrated, which a recall repairs, never a short file
  marked resident), and by ``reverse_stub``.
* ``hydrated``    - recalled: content local again and the remote copy still valid. Set by
  ``recall`` only after the bytes were written, verified and fsynced.

``pending`` names an operation that started changing the file and has not finished
(``stub`` or ``recall``); a re-run sees it and completes the work instead of mistaking the
half-done file for a user's modification. A release cut short is completed only while the file
holds what the release itself leaves; one written to in between is settled instead (see
``PosixFilesystem._settle_cut_release``): never punched, never recalled over.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

XATTR_NAME = "user.hub.hsm"
SCHEMA_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class HsmStateError(ValueError):
    """A stored record cannot be parsed, or a transition is not legal."""


class HsmState(StrEnum):
    UNMANAGED = "unmanaged"
    PREMIGRATED = "premigrated"
    MIGRATED = "migrated"
    HYDRATED = "hydrated"


class Pending(StrEnum):
    """A started, unfinished change to the file's bytes (see the module docstring)."""

    STUB = "stub"
    RECALL = "recall"


#: Resident states: the local bytes are the file's content.
RESIDENT_STATES = frozenset({HsmState.UNMANAGED, HsmState.PREMIGRATED, HsmState.HYDRATED})

#: Legal transitions. Same-state writes are allowed (updating ``pending`` or the remote version).
TRANSITIONS: dict[HsmState, frozenset[HsmState]] = {
    HsmState.UNMANAGED: frozenset({HsmState.PREMIGRATED, HsmState.MIGRATED}),  # migrated: reverse stub
    HsmState.PREMIGRATED: frozenset({HsmState.MIGRATED, HsmState.UNMANAGED}),
    HsmState.MIGRATED: frozenset({HsmState.HYDRATED}),  # never straight to unmanaged: bytes would be lost
    # hydrated -> premigrated: the recalled file was modified and its new content uploaded.
    HsmState.HYDRATED: frozenset({HsmState.MIGRATED, HsmState.UNMANAGED, HsmState.PREMIGRATED}),
}


def check_transition(old: HsmState, new: HsmState) -> None:
    """Raise ``HsmStateError`` unless ``old -> new`` is legal (or a same-state update)."""
    if old != new and new not in TRANSITIONS[old]:
        raise HsmStateError(f"illegal HSM transition {old} -> {new}")


@dataclass(frozen=True)
class HsmRecord:
    """What the file knows about its remote copy. ``inode`` and ``ctime_ns`` are as observed when
    the migration read the file (``ctime_ns`` is None for reverse stubs, which were never read)."""

    state: HsmState
    target: str
    key: str
    sha256: str
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int | None = None
    version: str | None = None  # the object's version id, when the store keeps versions
    stub_size: int = 0  # leading bytes kept resident in the stub
    pending: Pending | None = None
    #: None: ``sha256`` is the plain SHA-256 of the content. Set: it is the composite over parts
    #: of this many bytes (see ``agent.hsm.metadata``); records written before composites lack it.
    part_size: int | None = None

    def __post_init__(self) -> None:
        if self.state == HsmState.UNMANAGED:
            raise HsmStateError("an unmanaged file has no record")
        if not _SHA256.match(self.sha256):
            raise HsmStateError("sha256 must be 64 lower-case hex digits")
        if self.size < 0 or not 0 <= self.stub_size <= self.size:
            raise HsmStateError("size/stub_size out of range")
        if not self.key or not self.target:
            raise HsmStateError("key and target are required")
        if self.part_size is not None and self.part_size < 1:
            raise HsmStateError("part_size must be positive")

    def moved_to(self, state: HsmState, **changes: Any) -> HsmRecord:
        """A copy in ``state`` (checked against ``TRANSITIONS``) with ``changes`` applied."""
        check_transition(self.state, state)
        return replace(self, state=state, **changes)

    def to_bytes(self) -> bytes:
        """Compact, key-sorted, ASCII JSON. Built by hand (strings escaped by the json module's
        C escaper): the record is written once or twice per file, and for small files
        ``json.dumps`` with its encoder set-up was several percent of a migration's time."""
        parts: list[str] = []
        for name in _SORTED_FIELDS:
            if name == "v":
                parts.append(f'"v":{SCHEMA_VERSION}')
                continue
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str):  # StrEnum included
                parts.append(f'"{name}":{_escape(str(value))}')
            else:
                parts.append(f'"{name}":{int(value)}')
        return ("{" + ",".join(parts) + "}").encode("ascii")

    @classmethod
    def from_bytes(cls, raw: bytes) -> HsmRecord:
        """Parse strictly: an unknown schema, a missing or extra field, or a wrong type is an error
        (a record we do not fully understand must not drive a destructive operation)."""
        try:
            data = json.loads(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HsmStateError(f"HSM record is not ASCII JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HsmStateError("HSM record is not a JSON object")
        if data.pop("v", None) != SCHEMA_VERSION:
            raise HsmStateError("unknown HSM record schema version")
        ints = {"size", "mtime_ns", "inode", "stub_size", "ctime_ns", "part_size"}
        strs = {"state", "target", "key", "sha256", "version", "pending"}
        required = {"state", "target", "key", "sha256", "size", "mtime_ns", "inode"}
        unknown = set(data) - ints - strs
        if unknown:
            raise HsmStateError(f"unknown HSM record fields: {sorted(unknown)}")
        missing = required - set(data)
        if missing:
            raise HsmStateError(f"HSM record lacks {sorted(missing)}")
        for name, value in data.items():
            wanted = int if name in ints else str
            if type(value) is not wanted:  # bool is an int subclass; reject it too
                raise HsmStateError(f"HSM record field {name} has the wrong type")
        try:
            data["state"] = HsmState(data["state"])
            if "pending" in data:
                data["pending"] = Pending(data["pending"])
        except ValueError as exc:
            raise HsmStateError(str(exc)) from None
        return cls(**data)


_FIELDS = tuple(f.name for f in fields(HsmRecord))
_SORTED_FIELDS = tuple(sorted((*_FIELDS, "v")))
_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]

FileRef = int | str | os.PathLike[str]


def read_record(file: FileRef) -> HsmRecord | None:
    """The record of an open file descriptor (preferred: no path race) or a path (not followed
    if it is a symlink). None when the file is unmanaged."""
    try:
        raw = os.getxattr(file, XATTR_NAME) if isinstance(file, int) else os.getxattr(
            file, XATTR_NAME, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return None
        raise
    return HsmRecord.from_bytes(raw)


def write_record(fd: int, record: HsmRecord) -> None:
    """Replace the record in one ``setxattr`` (atomic). Callers fsync when ordering matters."""
    os.setxattr(fd, XATTR_NAME, record.to_bytes())


def clear_record(fd: int) -> None:
    """Make the file unmanaged. Clearing an unmanaged file is a no-op (tasks may run twice)."""
    try:
        os.removexattr(fd, XATTR_NAME)
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise
