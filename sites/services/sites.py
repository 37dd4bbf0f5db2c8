"""Site lifecycle, site settings and inventory refresh."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from rest_framework.exceptions import ValidationError

from hub.api.exceptions import Conflict
from hub.models import GlobalSetting
from sites.models import SettingsTask, Site, SiteSetting
from sites.services.nodes import ensure_default_queue
from sites.services.site_tasks import send_site_task

SETTING_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*(:[a-z0-9][a-z0-9_.-]*)+$")

# Settings every site starts with ("settings/refresh" creates any that are missing). Keys are
# ``<component>:<name>``; the agent applies them.
DEFAULT_SITE_SETTINGS: dict[str, tuple[Any, str]] = {
    "agent:heartbeat_interval": (30, "Seconds between an agent node's heartbeats."),
    "agent:log_level": ("INFO", "Agent log level (DEBUG, INFO, WARNING, ERROR)."),
    "agent:discovery_concurrency": (4, "Worker processes for discovery tasks on each node."),
    "agent:transfer_concurrency": (2, "Worker processes for data movement on each node."),
    "hsm:verify_checksum_on_recall": (True, "Check the recalled content against the stored checksum."),
    "hsm:stub_size": (0, "Bytes kept at the start of a migrated file (0: none)."),
    "s3:multipart_chunksize_mb": (64, "Part size for multipart uploads to S3."),
    "samba:workgroup": ("WORKGROUP", "SMB workgroup or domain short name."),
    "samba:realm": ("", "Kerberos realm for SMB (empty: none)."),
    "nfs:default_anonymous_uid": (65534, "UID that squashed NFS clients map to."),
}


def create_site(actor, **fields: Any) -> Site:
    """A site with its default queue and default settings (its agent is installed separately)."""
    site = Site.objects.create(**fields)
    ensure_default_queue(site)
    _ensure_default_settings(site)
    return site


def _ensure_default_settings(site: Site) -> list[str]:
    existing = set(site.settings.values_list("key", flat=True))
    missing = [
        SiteSetting(site=site, key=key, value=value, desc=desc)
        for key, (value, desc) in DEFAULT_SITE_SETTINGS.items()
        if key not in existing
    ]
    SiteSetting.objects.bulk_create(missing)
    return [row.key for row in missing]


def validate_setting_values(values: Any) -> list[dict[str, Any]]:
    """Check ``[{key, value}]``: keys well-formed and unique; ``value`` any JSON (null deletes)."""
    if not isinstance(values, list) or not values:
        raise ValidationError({"values": ["Give a non-empty list of {key, value} objects."]})
    errors: dict[int, Any] = {}
    seen: set[str] = set()
    clean = []
    for index, item in enumerate(values):
        if not isinstance(item, dict) or "key" not in item:
            errors[index] = {"key": ["This field is required."]}
            continue
        key = item["key"]
        if not isinstance(key, str) or not SETTING_KEY.match(key) or len(key) > 255:
            errors[index] = {"key": ["Use '<component>:<name>' in lower case (e.g. 'samba:realm')."]}
            continue
        if key in seen:
            errors[index] = {"key": [f"'{key}' is given twice."]}
            continue
        seen.add(key)
        clean.append({"key": key, "value": item.get("value")})
    if errors:
        raise ValidationError({"values": errors})
    return clean


def effective_settings(site: Site) -> dict[str, Any]:
    """What the agent applies: global settings, overridden by the site's own."""
    merged = {row.key: row.value for row in GlobalSetting.objects.all()}
    merged.update({row.key: row.value for row in site.settings.all()})
    return merged


@transaction.atomic
def apply_site_settings(actor, site: Site, values: list[dict[str, Any]]) -> tuple[SettingsTask, dict[str, list[Any]]]:
    """Store validated values (``None`` deletes a key) and push the site's settings to its agent."""
    changes: dict[str, list[Any]] = {}
    existing = {row.key: row for row in site.settings.filter(key__in=[v["key"] for v in values])}
    for item in values:
        key, value, old = item["key"], item["value"], existing.get(item["key"])
        if value is None:
            if old is not None:
                old.delete()
                changes[key] = [old.value, None]
        elif old is None:
            SiteSetting.objects.create(site=site, key=key, value=value,
                                       desc=DEFAULT_SITE_SETTINGS.get(key, (None, ""))[1])
            changes[key] = [None, value]
        elif old.value != value:
            changes[key] = [old.value, value]
            old.value = value
            old.save(update_fields=["value", "updated"])
    return push_site_settings(actor, site), changes


def push_site_settings(actor, site: Site) -> SettingsTask:
    return send_site_task(
        site, SettingsTask.TaskType.APPLY_SETTINGS,
        {"site": site.name, "settings": effective_settings(site)}, actor=actor,
        friendly_name=f"Apply settings on {site.name}",
    )


@transaction.atomic
def refresh_site_settings(actor, site: Site) -> tuple[SettingsTask, list[str]]:
    """Create any missing default settings, then ask the agent to report what it has applied."""
    created = _ensure_default_settings(site)
    task = send_site_task(site, SettingsTask.TaskType.REPORT_SETTINGS, {"site": site.name}, actor=actor,
                          friendly_name=f"Report settings of {site.name}")
    return task, created


def request_inventory(actor, site: Site) -> SettingsTask:
    return send_site_task(site, SettingsTask.TaskType.INVENTORY, {"site": site.name}, actor=actor,
                          friendly_name=f"Refresh inventory of {site.name}")


def delete_site(actor, site: Site) -> None:
    """Remove a site from the hub (its data is untouched). Refused while it is still in use."""
    from sites.services.nodes import live_queues

    problems = []
    if live_queues(site):
        problems.append("its agent nodes are still sending heartbeats (stop the agents first)")
    spaces = list(site.spaces.values_list("name", flat=True)[:5])
    if spaces:
        problems.append(f"spaces are placed on it: {', '.join(spaces)}")
    if problems:
        raise Conflict(f"Site '{site.name}' cannot be deleted: " + "; ".join(problems) + ".")
    site.delete()
