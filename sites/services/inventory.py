"""Applying an agent's inventory report: filesystems, pools, filesets, servers and counts.

The report is the agent's whole picture of its site, applied in one transaction, so readers see
either the old inventory or the new one. Robustness rules, because one bad report must not wipe
a site's inventory nor block every later report:

* a section (``filesystems``, ``pools``, ``filesets``, ``servers``) absent from the report, or not
  a list, is left as it is; an empty list means "there are none" and removes the rows;
* an item that is not an object, has no usable name, or a name or path longer than the column,
  is skipped with a warning (the rest of the report still applies);
* numbers are clamped to ``0 .. 2**63-1`` (a negative or absurd value is the agent's bug, and
  must not become a database error); NUL characters are dropped from text;
* pools and filesets on a filesystem the hub does not know are ignored.

Rows are matched by name and updated in place, so their ids stay stable for API clients and for
spaces that point at a pool; rows the agent no longer reports are removed. Unchanged rows are
not written at all, so applying the same report twice changes nothing but ``inventory_updated``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from sites.models import Fileset, Filesystem, Server, SettingsTask, Site, SpaceSite, StoragePool
from sites.services.site_tasks import record_result

logger = logging.getLogger(__name__)

_COUNTS = ("files_count", "directories_count", "files_hydrated_count", "files_stubbed_count")
_QUOTAS = ("block_quota", "block_usage", "files_quota", "files_usage")
_MAX_BIGINT = 2**63 - 1
_NAME_MAX = 255
_PATH_MAX = 4096
_SHORT_MAX = 50


def _int(value: Any) -> int:
    """A non-negative integer that fits a ``BigIntegerField``; anything unusable is 0."""
    if isinstance(value, bool):
        return int(value)
    try:
        return min(_MAX_BIGINT, max(0, int(value)))
    except (TypeError, ValueError, OverflowError):
        return 0


def _text(value: Any, max_length: int) -> str:
    """Text for a short descriptive column (fstype, status): NULs dropped, cut to the column."""
    if value is None:
        return ""
    return str(value).replace("\x00", "")[:max_length]


def _name(item: Any, key: str = "name") -> str | None:
    """The item's name, or None (and a warning) when it cannot name a row."""
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    name = str(value)
    if not name or "\x00" in name or len(name) > _NAME_MAX:
        return None
    return name


def _path(value: Any) -> str | None:
    """A path column's value, or None when it cannot be stored faithfully (a cut path is wrong)."""
    text = "" if value is None else str(value)
    if "\x00" in text or len(text) > _PATH_MAX:
        return None
    return text


def _section(report: dict[str, Any], key: str) -> list[Any] | None:
    """The report's list for ``key``, or None when the agent did not report that section."""
    value = report.get(key)
    return value if isinstance(value, list) else None


def _sync(
    model: type[models.Model],
    existing: Iterable[models.Model],
    key_of: Callable[[Any], Any],
    wanted: dict[Any, dict[str, Any]],
) -> int:
    """Make ``existing`` match ``wanted`` (``{key: field values}``): update changed rows in place,
    create new ones, delete the rest. Values name foreign keys by id (``site_id``), so comparing
    them loads nothing. Returns how many rows the site now has."""
    current = {key_of(obj): obj for obj in existing}
    to_create, to_update, changed_fields = [], [], set()
    for key, values in wanted.items():
        obj = current.pop(key, None)
        if obj is None:
            to_create.append(model(**values))
            continue
        changed = {field for field, value in values.items() if getattr(obj, field) != value}
        if changed:
            for field in changed:
                setattr(obj, field, values[field])
            to_update.append(obj)
            changed_fields |= changed
    if current:
        # Deleted first, so a unique (parent, name) is free before anything is written.
        model.objects.filter(pk__in=[obj.pk for obj in current.values()]).delete()
    if to_update:
        model.objects.bulk_update(to_update, sorted(changed_fields), batch_size=500)
    if to_create:
        model.objects.bulk_create(to_create, batch_size=500)
    return len(wanted)


def _warn(site: Site, what: str, item: Any) -> None:
    logger.warning("inventory of %s: %s skipped: %.200r", site.name, what, item)


@transaction.atomic
def apply_inventory(report: dict[str, Any]) -> Site:
    """Replace the site's inventory with ``report`` (an ``agent.contract.InventoryReport``).

    See the module docstring for how sections, bad items and numbers are treated. Raises
    ``Site.DoesNotExist`` for a report from a site the hub does not know.
    """
    site = Site.objects.select_for_update().get(name=report["site"])
    summary: dict[str, int] = {}

    # --- filesystems: the parents of pools and filesets -------------------------------------------
    items = _section(report, "filesystems")
    if items is not None:
        wanted: dict[Any, dict[str, Any]] = {}
        for item in items:
            name, mountpoint = _name(item), _path(item.get("mountpoint") if isinstance(item, dict) else None)
            if name is None or mountpoint is None:
                _warn(site, "filesystem", item)
                continue
            wanted[name] = {
                "site_id": site.pk, "name": name, "mountpoint": mountpoint,
                "fstype": _text(item.get("fstype"), _SHORT_MAX),
                **{key: _int(item.get(key)) for key in ("capacity", "used_space", "free_space")},
            }
        # Deleting a filesystem the agent no longer reports takes its pools and filesets with it.
        _sync(Filesystem, Filesystem.objects.filter(site=site), lambda fs: fs.name, wanted)
    filesystems = {fs.name: fs for fs in Filesystem.objects.filter(site=site)}
    summary["filesystems"] = len(filesystems)

    # --- pools ---------------------------------------------------------------------------------------
    items = _section(report, "pools")
    if items is not None:
        wanted = {}
        for item in items:
            name = _name(item)
            if name is None:
                _warn(site, "pool", item)
                continue
            fs = filesystems.get(str(item.get("filesystem")))
            if fs is None:
                logger.warning("inventory of %s: pool %s on unknown filesystem %r ignored",
                               site.name, name, item.get("filesystem"))
                continue
            wanted[(fs.pk, name)] = {
                "site_id": site.pk, "filesystem_id": fs.pk, "name": name,
                "is_default": bool(item.get("is_default", False)),
                **{key: _int(item.get(key)) for key in ("capacity", "used_space", "free_space")},
            }
        summary["pools"] = _sync(StoragePool, StoragePool.objects.filter(site=site),
                                 lambda pool: (pool.filesystem_id, pool.name), wanted)
    else:
        summary["pools"] = StoragePool.objects.filter(site=site).count()

    # --- filesets ------------------------------------------------------------------------------------
    items = _section(report, "filesets")
    if items is not None:
        wanted = {}
        for item in items:
            name, path = _name(item), _path(item.get("path") if isinstance(item, dict) else None)
            if name is None or path is None:
                _warn(site, "fileset", item)
                continue
            fs = filesystems.get(str(item.get("filesystem")))
            if fs is None:
                logger.warning("inventory of %s: fileset %s on unknown filesystem %r ignored",
                               site.name, name, item.get("filesystem"))
                continue
            wanted[(fs.pk, name)] = {
                "site_id": site.pk, "filesystem_id": fs.pk, "name": name, "path": path,
                "status": _text(item.get("status"), _SHORT_MAX),
                **{key: _int(item.get(key)) for key in _QUOTAS},
            }
        summary["filesets"] = _sync(Fileset, Fileset.objects.filter(site=site),
                                    lambda fileset: (fileset.filesystem_id, fileset.name), wanted)
    else:
        summary["filesets"] = Fileset.objects.filter(site=site).count()

    # --- servers -------------------------------------------------------------------------------------
    items = _section(report, "servers")
    if items is not None:
        wanted = {}
        for item in items:
            name = _name(item)
            if name is None:
                _warn(site, "server", item)
                continue
            interfaces = item.get("list_of_interfaces", [])
            # PostgreSQL's jsonb cannot hold U+0000; an unstorable list is dropped, not the report.
            if not isinstance(interfaces, list) or "\\u0000" in json.dumps(interfaces):
                interfaces = []
            wanted[name] = {"site_id": site.pk, "name": name, "list_of_interfaces": interfaces}
        # A node reports the servers it knows: itself (POSIX), or the whole cluster (GPFS, with
        # ``servers_scope: "cluster"``). Only a cluster-wide list may remove other nodes' rows;
        # otherwise several nodes reporting in turn would keep erasing each other.
        if report.get("servers_scope") == "cluster":
            scope = Server.objects.filter(site=site)
        else:
            scope = Server.objects.filter(site=site, name__in=[*wanted, str(report.get("node", ""))])
        _sync(Server, scope, lambda server: server.name, wanted)
        summary["servers"] = Server.objects.filter(site=site).count()
    else:
        summary["servers"] = Server.objects.filter(site=site).count()

    # --- counts and space usage ---------------------------------------------------------------------
    counts = report.get("counts")
    if isinstance(counts, dict):
        for key in _COUNTS:
            if key in counts:
                setattr(site, key, _int(counts[key]))
    site.inventory_updated = timezone.now()
    site.save(update_fields=[*_COUNTS, "inventory_updated"])

    usages = report.get("spaces")
    for usage in usages if isinstance(usages, list) else []:
        if not isinstance(usage, dict) or not isinstance(usage.get("mountpoint"), str):
            continue
        SpaceSite.objects.filter(site=site, space__mountpoint=usage["mountpoint"]).update(
            used_space=_int(usage.get("used_space")), used_files=_int(usage.get("used_files"))
        )

    if report.get("task_id"):
        record_result({"task_id": report["task_id"], "state": SettingsTask.State.SUCCESS, "results": summary})
    return site
