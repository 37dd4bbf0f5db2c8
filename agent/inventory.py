"""The inventory report of a POSIX site: filesystems, pools, servers, counts and space usage.

What is reported, and why:

* **filesystems** - the mounts holding the configured roots (from ``/proc/self/mounts``: the
  longest mountpoint containing each root), not every mount of the host: the hub shows where the
  site's data lives, not ``/proc`` or ``/run``. A filesystem is named after its mountpoint, the
  one name that is unique and stable across reboots (device names are not).
* **pools** - one per filesystem (``default``, ``is_default``): a POSIX filesystem has no storage
  pools; GPFS sites report theirs from ``mmdf``. Capacity/used/free come from ``statvfs``
  as ``df`` computes them (free is what unprivileged users can still write).
* **filesets** - none on POSIX (an empty list).
* On GPFS (``agent.filesystems``) filesystems, pools and filesets with their quotas come from the
  mm commands instead (``GpfsFilesystem.inventory``).
* **servers** - this node, with its network interfaces: names from ``socket.if_nameindex`` and
  addresses from ``ip -j addr`` when the ``ip`` command exists.
* **counts** and **spaces** - files, directories, hydrated and stubbed files under the roots and
  the usage of each space this agent created, from one walk bounded by ``inventory_budget``
  seconds. A walk that runs out of time reports neither: partial counts would be wrong numbers
  on the site card, while missing ones leave the previous values in place.

Several nodes of one site each report their own view; the hub applies each report whole.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.contract import FilesystemReport, InventoryReport, PoolReport, ServerReport, SiteCounts, SpaceUsage
from agent.hsm.state import XATTR_NAME

logger = logging.getLogger(__name__)

POOL_NAME = "default"
IP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Mount:
    source: str
    mountpoint: str
    fstype: str


def _unescape(field: str) -> str:
    # /proc/mounts escapes blanks, tabs, newlines and backslashes as octal (\040 ...).
    return field.encode("latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def read_mounts(path: str = "/proc/self/mounts") -> list[Mount]:
    mounts = []
    try:
        with open(path, encoding="latin-1") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 3:
                    mounts.append(Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2]))
    except OSError as exc:
        logger.warning("cannot read %s: %s", path, exc)
    return mounts


def mount_of(path: str, mounts: Sequence[Mount]) -> Mount | None:
    """The mount holding ``path`` (resolved): the last-mounted of the longest matching mountpoints."""
    real = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:  # later lines shadow earlier mounts on the same point
        point = mount.mountpoint
        inside = real == point or point == "/" or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mountpoint)):
            best = mount
    return best


def filesystems_for(
    roots: Iterable[Path], mounts: Sequence[Mount] | None = None
) -> list[tuple[Mount, os.statvfs_result]]:
    """One entry per distinct mount holding a root, with its ``statvfs``."""
    mounts = read_mounts() if mounts is None else mounts
    found: dict[str, tuple[Mount, os.statvfs_result]] = {}
    for root in roots:
        mount = mount_of(str(root), mounts)
        if mount is None:
            mount = Mount(source="unknown", mountpoint=os.path.realpath(root), fstype="")
        if mount.mountpoint in found:
            continue
        try:
            found[mount.mountpoint] = (mount, os.statvfs(mount.mountpoint))
        except OSError as exc:
            logger.warning("statvfs %s: %s", mount.mountpoint, exc)
    return [found[point] for point in sorted(found)]


def capacity(vfs: os.statvfs_result) -> tuple[int, int, int]:
    """``(capacity, used, free)`` in bytes, as ``df`` reports them."""
    size = vfs.f_frsize or vfs.f_bsize
    total = vfs.f_blocks * size
    used = (vfs.f_blocks - vfs.f_bfree) * size
    return total, used, vfs.f_bavail * size


def interfaces() -> list[dict[str, Any]]:
    """This host's interfaces: ``[{"name", "index", "addresses": ["10.0.0.1/24"], "mac", "state"}]``."""
    found: dict[str, dict[str, Any]] = {}
    try:
        for index, name in socket.if_nameindex():
            found[name] = {"name": name, "index": index, "addresses": []}
    except OSError as exc:
        logger.warning("cannot list network interfaces: %s", exc)
    ip = shutil.which("ip")
    if ip is None:
        return list(found.values())
    try:
        result = subprocess.run([ip, "-j", "addr"], capture_output=True, text=True, timeout=IP_TIMEOUT, check=True)
        links = json.loads(result.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        logger.warning("`ip -j addr` failed, reporting interface names only: %s", exc)
        return list(found.values())
    for link in links if isinstance(links, list) else []:
        name = link.get("ifname")
        if not isinstance(name, str):
            continue
        entry = found.setdefault(name, {"name": name, "index": link.get("ifindex"), "addresses": []})
        entry["addresses"] = [
            f"{addr['local']}/{addr['prefixlen']}" if "prefixlen" in addr else addr["local"]
            for addr in link.get("addr_info") or [] if isinstance(addr, dict) and addr.get("local")
        ]
        if link.get("address"):
            entry["mac"] = link["address"]
        if link.get("operstate"):
            entry["state"] = link["operstate"]
    return list(found.values())


class _OutOfTime(Exception):
    pass


def _hsm_state(path: str) -> str | None:
    try:
        raw = os.getxattr(path, XATTR_NAME, follow_symlinks=False)
    except OSError:
        return None
    try:
        value = json.loads(raw).get("state")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def count_tree(
    roots: Iterable[Path], spaces: Iterable[str], *, budget: float
) -> tuple[SiteCounts, list[SpaceUsage]] | None:
    """Counts under ``roots`` and the usage of each space (mountpoint) inside them, or None when
    the walk would take longer than ``budget`` seconds (or the budget is 0).

    Symlinks are counted as files and never followed; other filesystems mounted below a root are
    not entered (their files belong to that filesystem's report). Usage is allocated bytes
    (``st_blocks``), what quotas count.
    """
    if budget <= 0:
        return None
    deadline = time.monotonic() + budget
    counts = {"files_count": 0, "directories_count": 0, "files_hydrated_count": 0, "files_stubbed_count": 0}
    space_points = sorted({os.path.normpath(point) for point in spaces})
    usage = {point: {"used_space": 0, "used_files": 0} for point in space_points}
    seen_roots: set[str] = set()

    def charge(owners: tuple[str, ...], size: int) -> None:
        for point in owners:
            usage[point]["used_space"] += size
            usage[point]["used_files"] += 1

    try:
        for root in roots:
            top = os.path.realpath(root)
            if top in seen_roots:
                continue
            seen_roots.add(top)
            device = os.lstat(top).st_dev
            stack: list[tuple[str, tuple[str, ...]]] = [(top, tuple(p for p in space_points if
                                                                    top == p or top.startswith(p + "/")))]
            while stack:
                directory, owners = stack.pop()
                try:
                    with os.scandir(directory) as entries:
                        for entry in entries:
                            if time.monotonic() > deadline:
                                raise _OutOfTime
                            try:
                                info = entry.stat(follow_symlinks=False)
                            except OSError:
                                continue
                            if stat.S_ISDIR(info.st_mode):
                                if info.st_dev != device:
                                    continue
                                counts["directories_count"] += 1
                                path = entry.path
                                inner = owners + tuple(p for p in space_points if p == path)
                                charge(inner, info.st_blocks * 512)
                                stack.append((path, inner))
                                continue
                            counts["files_count"] += 1
                            charge(owners, info.st_blocks * 512)
                            if stat.S_ISREG(info.st_mode):
                                state = _hsm_state(entry.path)
                                if state == "migrated":
                                    counts["files_stubbed_count"] += 1
                                elif state == "hydrated":
                                    counts["files_hydrated_count"] += 1
                except (FileNotFoundError, NotADirectoryError, PermissionError):
                    continue
    except _OutOfTime:
        logger.info("inventory: counting under %s took longer than %gs; counts omitted",
                    ", ".join(map(str, roots)), budget)
        return None
    spaces_usage = [SpaceUsage(mountpoint=point, used_space=values["used_space"], used_files=values["used_files"])
                    for point, values in usage.items()
                    if any(point == os.path.realpath(r) or point.startswith(os.path.realpath(r) + "/") for r in roots)]
    return SiteCounts(**counts), spaces_usage  # type: ignore[typeddict-item]


def posix_storage(roots: Iterable[Path], mounts: Sequence[Mount] | None = None) -> dict[str, list[Any]]:
    """Filesystems and pools as ``statvfs`` sees the mounts holding ``roots`` (one ``default``
    pool each), and no filesets."""
    filesystems: list[FilesystemReport] = []
    pools: list[PoolReport] = []
    for mount, vfs in filesystems_for(roots, mounts):
        total, used, free = capacity(vfs)
        filesystems.append(FilesystemReport(name=mount.mountpoint, mountpoint=mount.mountpoint, fstype=mount.fstype,
                                            capacity=total, used_space=used, free_space=free))
        pools.append(PoolReport(filesystem=mount.mountpoint, name=POOL_NAME, capacity=total, used_space=used,
                                free_space=free, is_default=True))
    return {"filesystems": filesystems, "pools": pools, "filesets": []}


def build_report(
    *,
    site: str,
    node: str,
    roots: Sequence[Path],
    spaces: Iterable[str] = (),
    budget: float = 5.0,
    task_id: str | None = None,
    mounts: Sequence[Mount] | None = None,
    storage: Mapping[str, Any] | None = None,
) -> InventoryReport:
    """The ``InventoryReport`` of this node (see the module docstring). ``storage``: the
    ``filesystems``, ``pools`` and ``filesets`` as a driver that knows more than ``statvfs``
    reports them (``GpfsFilesystem.inventory``); by default ``posix_storage``."""
    parts = storage if storage is not None else posix_storage(roots, mounts)
    report = InventoryReport(
        site=site,
        node=node,
        filesystems=list(parts["filesystems"]),
        pools=list(parts["pools"]),
        filesets=list(parts["filesets"]),
        servers=[ServerReport(name=node, list_of_interfaces=interfaces())],
    )
    counted = count_tree(roots, spaces, budget=budget) if roots else None
    if counted is not None:
        report["counts"], report["spaces"] = counted
    if task_id:
        report["task_id"] = task_id
    return report
