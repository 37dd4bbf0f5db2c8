"""The GPFS (IBM Storage Scale, PixStor) filesystem driver: the POSIX driver plus what only the
Storage Scale commands can tell or do.

Everything the POSIX driver does (browsing, migrate, premigrate, recall, reverse stub, release,
with the HSM record in the ``user.hub.hsm`` extended attribute) is inherited unchanged: GPFS keeps
user extended attributes, punches holes and honours ``flock``, so the data-safety guarantees of
``agent.drivers.posix`` hold as they are. This class adds, through the one subprocess helper in
``agent.drivers.gpfs_commands`` (timeouts, no shell, parsed ``-Y`` output, errors mapped to the
driver hierarchy):

* **inventory** - filesystems (``mmlsfs all -Y``; ``mmlsfs <dev> -T -Y`` for a mount point the
  first did not give), storage pools with capacity/used/free (``mmdf <dev> -Y``, KiB -> bytes),
  filesets with their quotas (``mmlsfileset <dev> -L -Y`` and ``mmrepquota -j -Y <dev>``);
  ``inventory()`` returns the ``filesystems``/``pools``/``filesets`` parts of the wire
  contract's ``InventoryReport``;
* **snapshots** - ``mmlssnapshot``, and idempotent ``mmcrsnapshot``/``mmdelsnapshot``: the list
  is read first, and a failed command is re-checked against the list, so creating an existing
  snapshot or deleting a missing one is a no-op even when another agent raced us;
* **policy scans** - ``mmapplypolicy <path> -P <rules> -I defer -f <prefix> -L 0`` with a LIST
  rule, whose list file (``<prefix>.list.<name>``) is parsed into ``ScanEntry`` objects: the fast
  way to discover millions of files (the policy engine reads inodes in parallel instead of
  walking directories), and the basis of snapshot differences later.

Units: the commands print KiB; everything here is bytes. Names (devices, filesets, snapshots)
are checked before they reach a command line (``check_name``) even though no shell is involved,
so a name can never be taken for an option.

Errors: every method may raise ``TransientError`` (a command timed out, or the cluster was busy)
and ``PermanentError`` (a command failed, is missing, or printed something unexpected), as the
helper maps them; ``PathRefused`` for a scan path outside the space roots.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat as stat_mod
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import unquote_to_bytes

from agent.contract import FilesetReport, FilesystemReport, PoolReport
from agent.drivers.base import PermanentError
from agent.drivers.gpfs_commands import (
    DEFAULT_BIN_DIR,
    DEFAULT_TIMEOUT,
    MmCommandFailed,
    MmCommands,
    MmOutputError,
    y_ctime,
    y_int,
    y_text,
)
from agent.drivers.posix import EntryKind, PosixFilesystem
from agent.hsm.state import XATTR_NAME, HsmRecord, HsmState, HsmStateError

logger = logging.getLogger(__name__)

KIB = 1024
SYSTEM_POOL = "system"
#: Seconds a policy scan may run: a full scan of a large filesystem takes hours, not minutes.
DEFAULT_SCAN_TIMEOUT = 6 * 3600.0
#: The LIST rule name of ``policy_scan``'s own rules, hence the list file ``<prefix>.list.hubscan``.
SCAN_LIST = "hubscan"

# Devices, filesets, pools and snapshots: no leading "-" (not an option), no "/" (not a path), no
# blanks, no ":" (mmcrsnapshot reads "fileset:snapshot"). Snapshot names may start with "@" (SMB
# previous versions: "@GMT-2024.05.01-00.00.00").
_NAME = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_.@+-]{0,254}")
_LIST_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_NODES = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,+-]{0,1023}")  # "all", "mount", "node1,node2", a node class


def check_name(value: str, what: str) -> str:
    """``value`` if it is a safe device, fileset or snapshot name, else ``PermanentError``."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise PermanentError(f"invalid {what} name {value!r}")
    return value


def _device(value: str) -> str:
    return check_name(value.removeprefix("/dev/"), "filesystem")


# --- what the commands report --------------------------------------------------------------------

@dataclass(frozen=True)
class FilesystemInfo:
    """A GPFS filesystem as ``mmlsfs`` describes it; ``attributes`` holds every field (decoded)."""

    device: str
    mountpoint: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolUsage:
    """One storage pool's space in bytes (``mmdf`` poolTotal; free = full blocks + fragments)."""

    filesystem: str
    name: str
    capacity: int
    used: int
    free: int
    is_default: bool = False

    def report(self) -> PoolReport:
        return PoolReport(filesystem=self.filesystem, name=self.name, capacity=self.capacity,
                          used_space=self.used, free_space=self.free, is_default=self.is_default)


@dataclass(frozen=True)
class DiskUsage:
    """A filesystem's space (bytes) and inodes, with its pools (``mmdf <dev> -Y``)."""

    filesystem: str
    capacity: int
    used: int
    free: int
    pools: tuple[PoolUsage, ...]
    inodes_used: int | None = None
    inodes_free: int | None = None
    inodes_max: int | None = None


@dataclass(frozen=True)
class Quota:
    """A fileset quota: block figures in bytes, 0 meaning "no limit" (GPFS's convention)."""

    block_usage: int
    block_soft: int
    block_hard: int
    files_usage: int
    files_soft: int
    files_hard: int

    @property
    def block_quota(self) -> int:
        """The limit that stops writes: the hard limit, or the soft one when only that is set."""
        return self.block_hard or self.block_soft

    @property
    def files_quota(self) -> int:
        return self.files_hard or self.files_soft


@dataclass(frozen=True)
class FilesetInfo:
    """A fileset (``mmlsfileset -L``): ``path`` is its junction, ``""`` when unlinked."""

    filesystem: str
    name: str
    id: int | None
    status: str
    path: str
    parent_id: int | None = None
    inode_space: int | None = None
    created: datetime | None = None
    comment: str = ""
    max_inodes: int | None = None
    alloc_inodes: int | None = None
    quota: Quota | None = None

    def report(self) -> FilesetReport:
        if self.quota is None:  # quotas off: the hub's 0 means "no quota"
            return FilesetReport(filesystem=self.filesystem, name=self.name, path=self.path, status=self.status)
        return FilesetReport(filesystem=self.filesystem, name=self.name, path=self.path, status=self.status,
                             block_quota=self.quota.block_quota, block_usage=self.quota.block_usage,
                             files_quota=self.quota.files_quota, files_usage=self.quota.files_usage)


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot (``mmlssnapshot``); ``fileset`` is ``""`` for a global (filesystem) snapshot."""

    filesystem: str
    name: str
    snap_id: int | None
    status: str
    created: datetime | None
    fileset: str = ""


class InventoryParts(TypedDict):
    """The GPFS-specific parts of ``agent.contract.InventoryReport``."""

    filesystems: list[FilesystemReport]
    pools: list[PoolReport]
    filesets: list[FilesetReport]


# --- policy list files ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ListRecord:
    """One line of a policy list file: ``InodeNumber GenNumber SnapId [Show] -- Path``."""

    inode: int
    generation: int
    snap_id: int
    show: str
    path: str


def parse_policy_list(lines: Iterable[bytes], *, escaped: bool = True) -> Iterator[ListRecord]:
    """Records of a list file written by ``mmapplypolicy -I defer`` (read it in binary mode).

    With ``escaped`` (rules with ``ESCAPE '%/'``, as ``policy_scan`` writes them) the show text
    and the path are percent-encoded, so a name with a newline, a blank, ``" -- "`` or bytes that
    are not UTF-8 still fits on one line; the path is decoded to bytes and then to ``str`` with
    ``os.fsdecode``, exactly as the POSIX driver names files. Without escaping the path is taken
    as it is. A line that does not have the format raises ``MmOutputError``.
    """
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip(b"\r\n") if escaped else raw.removesuffix(b"\n")
        if not line.strip():
            continue
        head, sep, path = line.partition(b" -- ")
        fields = head.split()
        if not sep or len(fields) < 3 or len(fields) > 4:
            raise MmOutputError(f"policy list line {number} is not 'inode gen snapid [show] -- path'")
        try:
            inode, generation, snap_id = (int(x) for x in fields[:3])
        except ValueError:
            raise MmOutputError(f"policy list line {number}: inode, generation and snapshot id must be numbers") \
                from None
        show = fields[3] if len(fields) == 4 else b""
        if escaped:
            show, path = unquote_to_bytes(show), unquote_to_bytes(path)
        yield ListRecord(inode, generation, snap_id, os.fsdecode(show), os.fsdecode(path))


#: The attributes ``policy_scan`` asks for, in order, joined by ``|`` in the SHOW clause.
SCAN_FIELDS = ("FILE_SIZE", "KB_ALLOCATED", "USER_ID", "GROUP_ID", "MODE", "NLINK", "MISC_ATTRIBUTES",
               "MODIFICATION_TIME", "ACCESS_TIME", "CHANGE_TIME", "POOL_NAME", "FILESET_NAME")


@dataclass(frozen=True)
class ScanEntry:
    """A file or directory found by a policy scan, with the attributes the engine read.

    Times are the policy engine's timestamps (microseconds) read as UTC, as mmapplypolicy
    reports its own clock - an assumption not yet checked on a cluster, so ``show`` keeps the
    text they came from. ``mode`` is the permission bits (``kind`` the type). ``state`` and
    ``record`` come from the HSM extended attribute (when the scan asked for it); ``error`` says
    why a record could not be read. The engine reads them in one pass without opening files,
    so an HSM operation re-checks everything before it acts.
    """

    path: str
    inode: int
    generation: int
    snap_id: int
    kind: EntryKind
    size: int
    kb_allocated: int
    uid: int
    gid: int
    mode: int
    nlink: int
    misc: str
    modified: datetime | None
    accessed: datetime | None
    changed: datetime | None
    pool: str
    fileset: str
    state: HsmState = HsmState.UNMANAGED
    record: HsmRecord | None = None
    error: str | None = None
    show: str = ""


_TYPE_BITS = {"-": stat_mod.S_IFREG, "d": stat_mod.S_IFDIR, "l": stat_mod.S_IFLNK, "c": stat_mod.S_IFCHR,
              "b": stat_mod.S_IFBLK, "p": stat_mod.S_IFIFO, "s": stat_mod.S_IFSOCK}


_PERMISSIONS = ((1, "r", 0o400), (2, "w", 0o200), (3, "x", 0o100), (4, "r", 0o40), (5, "w", 0o20),
                (6, "x", 0o10), (7, "r", 0o4), (8, "w", 0o2), (9, "x", 0o1))
#: Where set-id and sticky bits show in mode text: lower case when the x bit is also set.
_SPECIAL = {3: ("sS", stat_mod.S_ISUID), 6: ("sS", stat_mod.S_ISGID), 9: ("tT", stat_mod.S_ISVTX)}


def parse_mode(text: str) -> int:
    """``ls -l`` style mode text (GPFS's MODE attribute, e.g. ``-rwsr-x--T``) as ``st_mode`` bits."""
    if len(text) != 10 or text[0] not in _TYPE_BITS:
        raise MmOutputError(f"not a mode string: {text!r}")
    mode = _TYPE_BITS[text[0]]
    for index, letter, bit in _PERMISSIONS:
        char = text[index]
        letters, special = _SPECIAL.get(index, ("", 0))
        if char in letters:
            mode |= special | (bit if char.islower() else 0)
        elif char == letter:
            mode |= bit
        elif char != "-":
            raise MmOutputError(f"not a mode string: {text!r}")
    return mode


def _policy_time(text: str) -> datetime | None:
    text = text.strip().replace("@", " ")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _kind(misc: str, mode: int) -> EntryKind:
    # MISC_ATTRIBUTES: F regular file, D directory, L symbolic link (O: other).
    if "D" in misc or stat_mod.S_ISDIR(mode):
        return EntryKind.DIRECTORY
    if "L" in misc or stat_mod.S_ISLNK(mode):
        return EntryKind.SYMLINK
    if "F" in misc or stat_mod.S_ISREG(mode):
        return EntryKind.FILE
    return EntryKind.OTHER


def scan_entry(record: ListRecord, *, hsm_state: bool = True) -> ScanEntry:
    """A ``ScanEntry`` from a record of ``policy_scan``'s own rules (``SCAN_FIELDS``, then the
    HSM record when ``hsm_state``). Raises ``MmOutputError`` when the show text does not fit."""
    count = len(SCAN_FIELDS) + (1 if hsm_state else 0)
    values = record.show.split("|", count - 1)
    if len(values) != count:
        raise MmOutputError(f"scan record of {record.path!r} has {len(values)} attributes, expected {count}")
    size, kb, uid, gid, mode_text, nlink, misc, mtime, atime, ctime, pool, fileset = values[:len(SCAN_FIELDS)]
    try:
        mode = parse_mode(mode_text)
        numbers = [int(x) for x in (size, kb, uid, gid, nlink)]
    except ValueError:
        raise MmOutputError(f"scan record of {record.path!r} has a bad number") from None
    hsm, state, error = None, HsmState.UNMANAGED, None
    raw = values[-1] if hsm_state else ""
    if raw:
        try:
            hsm = HsmRecord.from_bytes(os.fsencode(raw))
            state = hsm.state
        except HsmStateError as exc:
            error = f"bad HSM record: {exc}"
    return ScanEntry(record.path, record.inode, record.generation, record.snap_id, _kind(misc, mode), numbers[0],
                     numbers[1], numbers[2], numbers[3], stat_mod.S_IMODE(mode),
                     numbers[4], misc, _policy_time(mtime), _policy_time(atime), _policy_time(ctime), pool, fileset,
                     state, hsm, error, record.show)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def scan_rules(*, list_name: str = SCAN_LIST, directories: bool = False, filesets: Sequence[str] = (),
               where: str | None = None, hsm_state: bool = True) -> str:
    """The policy file ``policy_scan`` runs: one external list (``EXEC ''`` - with ``-I defer``
    nothing is executed, the list is only written) and one LIST rule that SHOWs ``SCAN_FIELDS``.

    ``ESCAPE '%/'`` percent-encodes every character of paths and show text except letters,
    digits, ``-_.~`` and ``/``, so any name fits on one line. ``where`` is an SQL condition in
    the policy language, passed as it is (it comes from the site's configuration, not a user).
    """
    if not _LIST_NAME.fullmatch(list_name):
        raise PermanentError(f"invalid policy list name {list_name!r}")
    show = " || '|' || ".join(f"VARCHAR({name})" for name in SCAN_FIELDS)
    if hsm_state:
        # SQL NULL would blank the whole SHOW (a file without the attribute): map it to ''.
        attr = f"XATTR({_sql_string(XATTR_NAME)})"
        show += f" || '|' || (CASE WHEN {attr} IS NULL THEN '' ELSE {attr} END)"
    rule = f"RULE {_sql_string(list_name)} LIST {_sql_string(list_name)}"
    if directories:
        rule += " DIRECTORIES_PLUS"
    if filesets:
        rule += " FOR FILESET (" + ", ".join(_sql_string(check_name(f, "fileset")) for f in filesets) + ")"
    rule += f"\n  SHOW({show})"
    if where:
        rule += f"\n  WHERE {where}"
    return (f"RULE EXTERNAL LIST {_sql_string(list_name)} EXEC '' ESCAPE '%/'\n\n{rule}\n")


@dataclass(frozen=True)
class PolicyScan:
    """The list files of one ``mmapplypolicy`` run, valid inside ``policy_scan``'s ``with``."""

    lists: Mapping[str, Path]
    hsm_state: bool = True

    def records(self, list_name: str = SCAN_LIST) -> Iterator[ListRecord]:
        """The raw records of one list (none when the rules matched no file: no list is written)."""
        path = self.lists.get(list_name)
        if path is None:
            return
        with open(path, "rb") as lines:
            yield from parse_policy_list(lines)

    def entries(self, list_name: str = SCAN_LIST) -> Iterator[ScanEntry]:
        """The entries of ``policy_scan``'s own list, streamed (bounded memory)."""
        for record in self.records(list_name):
            yield scan_entry(record, hsm_state=self.hsm_state)


# --- the driver ----------------------------------------------------------------------------------

def _int0(value: str | None) -> int:
    return y_int(value, 0) or 0


class GpfsFilesystem(PosixFilesystem):
    """The POSIX HSM driver on Storage Scale, plus inventory, snapshots and policy scans.

    ``bin_dir`` holds the mm commands (tests point it at fakes); ``commands`` replaces the whole
    helper. ``devices`` limits the inventory to those filesystems (default: every filesystem
    ``mmlsfs all`` lists). ``default_pools`` names each device's default placement pool when
    the site knows it; otherwise ``system`` is reported as the default.
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]], *, bin_dir: str | os.PathLike[str] = DEFAULT_BIN_DIR,
                 commands: MmCommands | None = None, command_timeout: float = DEFAULT_TIMEOUT,
                 scan_timeout: float = DEFAULT_SCAN_TIMEOUT, devices: Sequence[str] | None = None,
                 default_pools: Mapping[str, str] | None = None, **posix_options: Any) -> None:
        super().__init__(roots, **posix_options)
        self.commands = commands if commands is not None else MmCommands(bin_dir, timeout=command_timeout)
        self.scan_timeout = scan_timeout
        self.devices = [_device(d) for d in devices] if devices is not None else None
        self.default_pools = {_device(dev): check_name(pool, "pool") for dev, pool in (default_pools or {}).items()}

    # --- filesystems -----------------------------------------------------------------------------
    def filesystems(self) -> list[FilesystemInfo]:
        """The filesystems of the cluster (or ``devices``), from one ``mmlsfs all -Y``."""
        rows = self.commands.run_y("mmlsfs", ["all", "-Y"]).get("", [])
        attributes: dict[str, dict[str, str]] = {}
        for row in rows:
            attributes.setdefault(row.get("deviceName", ""), {})[row.get("fieldName", "")] = row.get("data", "")
        attributes.pop("", None)
        wanted = self.devices if self.devices is not None else list(attributes)
        found = []
        for device in wanted:
            if device not in attributes:
                raise PermanentError(f"filesystem {device!r} is not known to the GPFS cluster")
            mountpoint = attributes[device].get("defaultMountPoint") or self.mountpoint(device)
            found.append(FilesystemInfo(device, mountpoint, attributes[device]))
        return found

    def mountpoint(self, device: str) -> str:
        """The default mount point of ``device`` (``mmlsfs <dev> -T -Y``)."""
        device = _device(device)
        for row in self.commands.run_y("mmlsfs", [device, "-T", "-Y"]).get("", []):
            if row.get("fieldName") == "defaultMountPoint" and row.get("data"):
                return row["data"]
        raise MmOutputError(f"mmlsfs reported no mount point for {device}")

    # --- space -----------------------------------------------------------------------------------
    def disk_usage(self, device: str) -> DiskUsage:
        """Space per pool and for the filesystem, in bytes (``mmdf <dev> -Y`` prints KiB)."""
        device = _device(device)
        sections = self.commands.run_y("mmdf", [device, "-Y"])
        default = self.default_pools.get(device, SYSTEM_POOL)
        pools = []
        for row in sections.get("poolTotal", []):
            capacity = _int0(row.get("poolSize")) * KIB
            free = (_int0(row.get("freeBlocks")) + _int0(row.get("freeFragments"))) * KIB
            name = row.get("poolName", "")
            pools.append(PoolUsage(device, name, capacity, max(0, capacity - free), free, name == default))
        total = (sections.get("fsTotal") or [{}])[0]
        if not total:
            raise MmOutputError(f"mmdf printed no fsTotal for {device}")
        capacity = _int0(total.get("fsSize")) * KIB
        free = (_int0(total.get("freeBlocks")) + _int0(total.get("freeFragments"))) * KIB
        inodes = (sections.get("inode") or [{}])[0]
        return DiskUsage(device, capacity, max(0, capacity - free), free, tuple(pools),
                         y_int(inodes.get("usedInodes")), y_int(inodes.get("freeInodes")),
                         y_int(inodes.get("maxInodes")))

    def pools(self, device: str) -> list[PoolUsage]:
        return list(self.disk_usage(device).pools)

    # --- filesets and quotas ---------------------------------------------------------------------
    def filesets(self, device: str, *, quotas: bool = True) -> list[FilesetInfo]:
        """The filesets of ``device`` (``mmlsfileset <dev> -L -Y``) with their quotas
        (``mmrepquota -j -Y <dev>``). When quotas are not enabled on the filesystem (the command
        fails permanently), filesets are returned without them; a busy cluster still raises."""
        device = _device(device)
        table = self.commands.run_y("mmlsfileset", [device, "-L", "-Y"]).get("", [])
        by_name = self.fileset_quotas(device) if quotas else {}
        result = []
        for row in table:
            name = row.get("filesetName", "")
            if not name:
                continue
            result.append(FilesetInfo(
                filesystem=row.get("filesystemName") or device, name=name, id=y_int(row.get("id")),
                status=y_text(row.get("status")), path=y_text(row.get("path")),
                parent_id=y_int(row.get("parentId")), inode_space=y_int(row.get("inodeSpace")),
                created=y_ctime(row.get("created")), comment=y_text(row.get("comment")),
                max_inodes=y_int(row.get("maxInodes")), alloc_inodes=y_int(row.get("allocInodes")),
                quota=by_name.get(name)))
        return result

    def fileset_quotas(self, device: str) -> dict[str, Quota]:
        """Every fileset quota of ``device`` by fileset name; ``{}`` when quotas are off."""
        device = _device(device)
        try:
            sections = self.commands.run_y("mmrepquota", ["-j", "-Y", device])
        except MmCommandFailed as exc:  # quotas off; a busy cluster (transient) or bad output still raise
            logger.warning("no fileset quotas for %s: %s", device, exc)
            return {}
        return {row.get("name", ""): _quota(row) for row in sections.get("", [])
                if row.get("quotaType") == "FILESET" and row.get("name")}

    def fileset_quota(self, device: str, fileset: str) -> Quota | None:
        """One fileset's quota and usage (``mmlsquota -j <fileset> -Y <dev>``); None if unreported."""
        device, fileset = _device(device), check_name(fileset, "fileset")
        for row in self.commands.run_y("mmlsquota", ["-j", fileset, "-Y", device]).get("", []):
            if row.get("quotaType") == "FILESET":
                return _quota(row)
        return None

    # --- snapshots -------------------------------------------------------------------------------
    def snapshots(self, device: str, *, fileset: str | None = None) -> list[SnapshotInfo]:
        """Snapshots of ``device`` (only ``fileset``'s when given), oldest first as GPFS lists them."""
        device = _device(device)
        args = [device] + (["-j", check_name(fileset, "fileset")] if fileset else []) + ["-Y"]
        found = []
        for row in self.commands.run_y("mmlssnapshot", args).get("", []):
            info = SnapshotInfo(row.get("filesystemName") or device, row.get("directory", ""),
                                y_int(row.get("snapID")), y_text(row.get("status")), y_ctime(row.get("created")),
                                y_text(row.get("fileset")))
            if fileset is None or info.fileset == fileset:
                found.append(info)
        return found

    def find_snapshot(self, device: str, name: str, *, fileset: str | None = None) -> SnapshotInfo | None:
        return next((s for s in self.snapshots(device, fileset=fileset)
                     if s.name == name and s.fileset == (fileset or "")), None)

    def create_snapshot(self, device: str, name: str, *, fileset: str | None = None) -> bool:
        """Create snapshot ``name`` (of ``fileset`` with ``-j``); True if this call created it,
        False if it already existed - also when the create failed because another agent made it
        first. Running it twice equals once."""
        device, name = _device(device), check_name(name, "snapshot")
        if self.find_snapshot(device, name, fileset=fileset) is not None:
            return False
        args = [device, name] + (["-j", check_name(fileset, "fileset")] if fileset else [])
        try:
            self.commands.run("mmcrsnapshot", args)
        except MmCommandFailed:
            if self.find_snapshot(device, name, fileset=fileset) is not None:
                return False
            raise
        return True

    def delete_snapshot(self, device: str, name: str, *, fileset: str | None = None) -> bool:
        """Delete snapshot ``name``; True if this call deleted it, False if it was not there (or
        vanished while we tried). Running it twice equals once."""
        device, name = _device(device), check_name(name, "snapshot")
        if self.find_snapshot(device, name, fileset=fileset) is None:
            return False
        args = [device, name] + (["-j", check_name(fileset, "fileset")] if fileset else [])
        try:
            self.commands.run("mmdelsnapshot", args)
        except MmCommandFailed:
            if self.find_snapshot(device, name, fileset=fileset) is None:
                return False
            raise
        return True

    # --- policy scans ----------------------------------------------------------------------------
    @contextmanager
    def policy_scan(self, path: str | os.PathLike[str], *, rules: str | None = None, directories: bool = False,
                    filesets: Sequence[str] = (), where: str | None = None, hsm_state: bool = True,
                    snapshot: str | None = None, nodes: str | None = None,
                    work_dir: str | os.PathLike[str] | None = None,
                    global_work_dir: str | os.PathLike[str] | None = None,
                    timeout: float | None = None) -> Iterator[PolicyScan]:
        """Run ``mmapplypolicy <path> -P <rules> -I defer -f <prefix> -L 0`` and yield its lists.

        ``path`` must lie in a space root. Without ``rules`` the scan lists files (and with
        ``directories`` directories too) under ``scan_rules``, read with ``entries()``; custom
        ``rules`` must use ``ESCAPE '%/'`` and are read with ``records(<list name>)``.
        ``snapshot`` scans that snapshot (``-S``); ``nodes``/``global_work_dir`` spread the scan
        over nodes (``-N``/``-g``; ``work_dir`` must then be on shared storage). The list files
        live in a private temporary directory under ``work_dir``, removed when the block ends.
        """
        sp = self.resolve(path)
        text = rules if rules is not None else scan_rules(directories=directories, filesets=filesets, where=where,
                                                          hsm_state=hsm_state)
        tmp = tempfile.mkdtemp(prefix="hub-scan-", dir=os.fspath(work_dir) if work_dir is not None else None)
        try:
            rules_file = os.path.join(tmp, "rules.pol")
            fd = os.open(rules_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            prefix = os.path.join(tmp, "scan")
            args = [sp.path, "-P", rules_file, "-I", "defer", "-f", prefix, "-L", "0"]
            if snapshot:
                args += ["-S", check_name(snapshot, "snapshot")]
            if nodes:
                if not _NODES.fullmatch(nodes):
                    raise PermanentError(f"invalid node list {nodes!r}")
                args += ["-N", nodes]
            if global_work_dir is not None:
                args += ["-g", os.fspath(global_work_dir)]
            self.commands.run("mmapplypolicy", args, timeout=self.scan_timeout if timeout is None else timeout)
            marker = "scan.list."
            lists = {name[len(marker):]: Path(tmp, name) for name in os.listdir(tmp) if name.startswith(marker)}
            yield PolicyScan(lists, hsm_state=hsm_state if rules is None else False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def scan(self, path: str | os.PathLike[str], **options: Any) -> Iterator[ScanEntry]:
        """``policy_scan``'s entries as one stream. The list files go when the stream ends or is
        closed (a consumer that stops early should ``close()`` it, or use ``policy_scan``)."""
        with self.policy_scan(path, **options) as found:
            yield from found.entries()

    # --- inventory -------------------------------------------------------------------------------
    def inventory(self) -> InventoryParts:
        """Filesystems, pools and filesets for the site's ``InventoryReport``.

        Any failure raises rather than returning a partial picture: the hub replaces its lists
        with what is reported, so a missing pool would be deleted there.
        """
        parts = InventoryParts(filesystems=[], pools=[], filesets=[])
        for fs in self.filesystems():
            usage = self.disk_usage(fs.device)
            parts["filesystems"].append(FilesystemReport(name=fs.device, mountpoint=fs.mountpoint, fstype="gpfs",
                                                         capacity=usage.capacity, used_space=usage.used,
                                                         free_space=usage.free))
            parts["pools"].extend(pool.report() for pool in usage.pools)
            parts["filesets"].extend(fileset.report() for fileset in self.filesets(fs.device))
        return parts


def _quota(row: Mapping[str, str]) -> Quota:
    return Quota(block_usage=_int0(row.get("blockUsage")) * KIB, block_soft=_int0(row.get("blockQuota")) * KIB,
                 block_hard=_int0(row.get("blockLimit")) * KIB, files_usage=_int0(row.get("filesUsage")),
                 files_soft=_int0(row.get("filesQuota")), files_hard=_int0(row.get("filesLimit")))


__all__ = [
    "DEFAULT_SCAN_TIMEOUT", "SCAN_FIELDS", "SCAN_LIST", "DiskUsage", "FilesetInfo", "FilesystemInfo", "GpfsFilesystem",
    "InventoryParts", "ListRecord", "PolicyScan", "PoolUsage", "Quota", "ScanEntry", "SnapshotInfo", "check_name",
    "parse_mode", "parse_policy_list", "scan_entry", "scan_rules",
]
