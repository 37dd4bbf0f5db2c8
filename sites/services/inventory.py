"""Applying an agent's inventory report: filesystems, pools, filesets, servers and counts."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from sites.models import Fileset, Filesystem, Server, SettingsTask, Site, SpaceSite, StoragePool
from sites.services.site_tasks import record_result

logger = logging.getLogger(__name__)

_COUNTS = ("files_count", "directories_count", "files_hydrated_count", "files_stubbed_count")


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


@transaction.atomic
def apply_inventory(report: dict[str, Any]) -> Site:
    """Replace the site's inventory with ``report`` (an ``agent.contract.InventoryReport``).

    Rows are matched by name and updated in place, so their ids stay stable for API clients and
    for spaces that point at a pool; rows the agent no longer reports are removed.
    """
    site = Site.objects.select_for_update().get(name=report["site"])

    filesystems: dict[str, Filesystem] = {}
    for item in report.get("filesystems", []):
        fs, _ = Filesystem.objects.update_or_create(
            site=site, name=str(item["name"]),
            defaults={
                "mountpoint": str(item.get("mountpoint", "")),
                "fstype": str(item.get("fstype", "")),
                "capacity": _int(item.get("capacity")),
                "used_space": _int(item.get("used_space")),
                "free_space": _int(item.get("free_space")),
            },
        )
        filesystems[fs.name] = fs
    Filesystem.objects.filter(site=site).exclude(pk__in=[fs.pk for fs in filesystems.values()]).delete()

    keep_pools = []
    for item in report.get("pools", []):
        fs = filesystems.get(str(item.get("filesystem")))
        if fs is None:
            logger.warning("inventory of %s: pool %s on unknown filesystem ignored", site, item.get("name"))
            continue
        pool, _ = StoragePool.objects.update_or_create(
            filesystem=fs, name=str(item["name"]),
            defaults={
                "site": site,
                "capacity": _int(item.get("capacity")),
                "used_space": _int(item.get("used_space")),
                "free_space": _int(item.get("free_space")),
                "is_default": bool(item.get("is_default", False)),
            },
        )
        keep_pools.append(pool.pk)
    StoragePool.objects.filter(site=site).exclude(pk__in=keep_pools).delete()

    keep_filesets = []
    for item in report.get("filesets", []):
        fs = filesystems.get(str(item.get("filesystem")))
        if fs is None:
            continue
        fileset, _ = Fileset.objects.update_or_create(
            filesystem=fs, name=str(item["name"]),
            defaults={
                "site": site,
                "path": str(item.get("path", "")),
                "status": str(item.get("status", "")),
                **{key: _int(item.get(key)) for key in ("block_quota", "block_usage", "files_quota", "files_usage")},
            },
        )
        keep_filesets.append(fileset.pk)
    Fileset.objects.filter(site=site).exclude(pk__in=keep_filesets).delete()

    keep_servers = []
    for item in report.get("servers", []):
        interfaces = item.get("list_of_interfaces", [])
        server, _ = Server.objects.update_or_create(
            site=site, name=str(item["name"]),
            defaults={"list_of_interfaces": interfaces if isinstance(interfaces, list) else []},
        )
        keep_servers.append(server.pk)
    Server.objects.filter(site=site).exclude(pk__in=keep_servers).delete()

    counts = report.get("counts") or {}
    for key in _COUNTS:
        if key in counts:
            setattr(site, key, _int(counts[key]))
    site.inventory_updated = timezone.now()
    site.save(update_fields=[*_COUNTS, "inventory_updated"])

    for usage in report.get("spaces", []):
        SpaceSite.objects.filter(site=site, space__mountpoint=usage.get("mountpoint")).update(
            used_space=_int(usage.get("used_space")), used_files=_int(usage.get("used_files"))
        )

    if report.get("task_id"):
        record_result({"task_id": report["task_id"], "state": SettingsTask.State.SUCCESS,
                       "results": {"filesystems": len(filesystems), "pools": len(keep_pools),
                                   "filesets": len(keep_filesets), "servers": len(keep_servers)}})
    return site
