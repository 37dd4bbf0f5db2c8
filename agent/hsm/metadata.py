"""The file metadata an object carries, so a recall or a reverse stub elsewhere can restore it.

Object stores only agree on a small subset of metadata: lower-case ASCII names, ASCII string
values, a small total size (S3 allows 2 KiB of user metadata). Azure forbids ``-`` in names and
some proxies drop HTTP headers with ``_``, so names are plain ``hub<field>``. Values are decimal
integers, octal for the mode, lower-case hex for the checksum, and percent-encoded bytes for the
path (file names are arbitrary bytes on Linux).

Parsing is strict: a value that does not match its exact format is an error, because these
values are used to decide whether a remote copy is the file (and then to release its blocks).

Checksum formats (``hubsha256`` with ``hubpartsize``): without ``hubpartsize`` the checksum is the
plain SHA-256 of the bytes (every object written before composites existed, and every object sent
in one request). With ``hubpartsize`` = N it is a *composite*: the SHA-256 of the concatenation of
the raw 32-byte SHA-256 digests of the consecutive N-byte parts of the bytes (the last part may be
shorter; an empty object has no parts). Multipart uploads use it so that the parts can be hashed
in parallel before the upload starts (``agent.transfer.checksum_fd``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

SCHEMA_VERSION = "1"
PREFIX = "hub"
#: Longest percent-encoded path stored; longer paths are omitted (the object key still has it)
#: so the metadata stays under S3's 2 KiB limit.
MAX_PATH_CHARS = 1024

_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")
_UINT = re.compile(r"^(0|[1-9][0-9]*)$")
_MODE = re.compile(r"^[0-7]{4}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PATH = re.compile(r"^([A-Za-z0-9/._~-]|%[0-9A-F]{2})+$")
_PATH_SAFE = "/._~-"
_UNRESERVED = re.compile(r"[A-Za-z0-9/._~-]*")  # unchanged by quote(safe=_PATH_SAFE)


class MetadataError(ValueError):
    """The object's metadata is missing a field or a value is malformed."""


@dataclass(frozen=True)
class ObjectMetadata:
    """A file's identity as stored with its object. ``mode`` holds permission bits only."""

    sha256: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    path: str | None = None  # space-relative, ``/``-separated, as ``os.fsdecode`` gives it
    inode: int | None = None  # with ctime_ns: recognise our own upload after a crash
    ctime_ns: int | None = None
    part_size: int | None = None  # set: ``sha256`` is the composite over parts of this size


_REQUIRED = ("sha256", "size", "mode", "uid", "gid", "mtime_ns", "atime_ns")
_OPTIONAL = ("path", "inode", "ctime_ns", "part_size")


def _name(field: str) -> str:
    return PREFIX + field.replace("_", "")


_N = {field: _name(field) for field in ("meta",) + _REQUIRED + _OPTIONAL}  # looked up per file


def encode_path(path: str) -> str:
    """Percent-encode a relative path's bytes into the ASCII subset every store accepts."""
    if _UNRESERVED.fullmatch(path):
        return path  # what quote() gives for these characters: themselves (the usual name, quicker)
    return quote(os.fsencode(path), safe=_PATH_SAFE)


def decode_path(value: str) -> str:
    if not _PATH.match(value):
        raise MetadataError("path is not percent-encoded ASCII")
    path = os.fsdecode(unquote_to_bytes(value))
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "" in parts or "\0" in path:
        raise MetadataError("path must be relative, without '..' or empty components")
    return path


def to_metadata(meta: ObjectMetadata) -> dict[str, str]:
    """The flat string map to pass to ``ObjectStore.put``."""
    if not _SHA256.match(meta.sha256):
        raise MetadataError("sha256 must be 64 lower-case hex digits")
    out = {
        _N["meta"]: SCHEMA_VERSION,
        _N["sha256"]: meta.sha256,
        _N["size"]: str(meta.size),
        _N["mode"]: format(meta.mode & 0o7777, "04o"),
        _N["uid"]: str(meta.uid),
        _N["gid"]: str(meta.gid),
        _N["mtime_ns"]: str(meta.mtime_ns),
        _N["atime_ns"]: str(meta.atime_ns),
    }
    if meta.path is not None:
        encoded = encode_path(meta.path)
        if len(encoded) <= MAX_PATH_CHARS:
            out[_N["path"]] = encoded
    if meta.inode is not None:
        out[_N["inode"]] = str(meta.inode)
    if meta.ctime_ns is not None:
        out[_N["ctime_ns"]] = str(meta.ctime_ns)
    if meta.part_size is not None:
        if meta.part_size < 1:
            raise MetadataError("part_size must be positive")
        out[_N["part_size"]] = str(meta.part_size)
    return out


def has_hub_metadata(metadata: Mapping[str, str]) -> bool:
    """Whether the object was written by this product (it carries our schema marker)."""
    return any(k.lower() == _name("meta") for k in metadata)


def parse_metadata(metadata: Mapping[str, str]) -> ObjectMetadata:
    """Parse what ``to_metadata`` wrote. Other names (the store's own) are ignored; ours must be
    exact. Names are compared case-insensitively because some stores capitalise them."""
    ours = {k.lower(): v for k, v in metadata.items() if k.lower().startswith(PREFIX)}
    if ours.get(_name("meta")) != SCHEMA_VERSION:
        raise MetadataError("not hub metadata, or an unknown schema version")
    values: dict[str, object] = {}
    for field in _REQUIRED + _OPTIONAL:
        raw = ours.get(_name(field))
        if raw is None:
            if field in _REQUIRED:
                raise MetadataError(f"metadata lacks {field}")
            continue
        if not raw.isascii():
            raise MetadataError(f"{field} is not ASCII")
        if field == "sha256":
            if not _SHA256.match(raw):
                raise MetadataError("sha256 is not 64 lower-case hex digits")
            values[field] = raw
        elif field == "mode":
            if not _MODE.match(raw):
                raise MetadataError("mode is not four octal digits")
            values[field] = int(raw, 8)
        elif field == "path":
            values[field] = decode_path(raw)
        else:
            pattern = _INT if field in ("mtime_ns", "atime_ns", "ctime_ns") else _UINT
            if not pattern.match(raw):
                raise MetadataError(f"{field} is not a decimal integer")
            values[field] = int(raw)
    if values.get("part_size") == 0:
        raise MetadataError("part_size must be positive")
    return ObjectMetadata(**values)  # type: ignore[arg-type]
