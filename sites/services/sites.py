"""Site lifecycle, site settings and inventory refresh.

A site's ``name`` is also the name of its agents' broker queue (``agent.contract.broker_queue``)
and the name agents put in their heartbeats, so it is fixed once agents have reported: renaming
would leave the running agents consuming a queue nothing is sent to, and their heartbeats would
be rejected as coming from an unknown site.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from rest_framework.exceptions import ValidationError

from hub import permissions
from hub.api.exceptions import Conflict
from hub.models import GlobalSetting
from sites.models import ExternalTarget, SettingsTask, Site, SiteSetting, heartbeat_cutoff
from sites.services.nodes import ensure_default_queue
from sites.services.site_tasks import send_site_task

# The same rule as global settings (``hub.api.serializers.config``): a site setting overrides the
# global one of the same key, so every global key must be expressible here too.
SETTING_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)+$")
SETTING_KEY_HELP = "'section:name' (letters, digits, '_', '.', '-' separated by ':'), e.g. 'samba:realm'"

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


@transaction.atomic
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
    """Check ``[{key, value}]``: keys well-formed and given once; ``value`` any JSON (null deletes).

    Errors are ``{index: {"key": [...]}}`` (or a list for a malformed whole), for the caller to
    report under its own field name (``values``).
    """
    if not isinstance(values, list) or not values:
        raise ValidationError(["Give a non-empty list of {key, value} objects."])
    errors: dict[int, Any] = {}
    seen: set[str] = set()
    clean = []
    for index, item in enumerate(values):
        if not isinstance(item, dict) or "key" not in item:
            errors[index] = {"key": ["This field is required."]}
            continue
        key = item["key"]
        if not isinstance(key, str) or not SETTING_KEY.match(key) or len(key) > 255:
            errors[index] = {"key": [f"A setting key is {SETTING_KEY_HELP}."]}
            continue
        if key in seen:
            errors[index] = {"key": [f"'{key}' is given twice."]}
            continue
        seen.add(key)
        clean.append({"key": key, "value": item.get("value")})
    if errors:
        raise ValidationError(errors)
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
    """Send the site's effective settings (global, overridden by its own) to its agent."""
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
    """Ask the agent for a fresh inventory; its report (``inventory.apply_inventory``) ends the task."""
    return send_site_task(site, SettingsTask.TaskType.INVENTORY, {"site": site.name}, actor=actor,
                          friendly_name=f"Refresh inventory of {site.name}")


@transaction.atomic
def update_site(actor, site: Site, **fields: Any) -> Site:
    """Apply validated fields. The name is fixed once agent nodes have reported (module docstring)."""
    new_name = fields.get("name")
    if new_name is not None and new_name != site.name and site.nodes.exists():
        raise ValidationError({"name": [
            f"Site '{site.name}' cannot be renamed while it has agent nodes: its agents consume the broker "
            f"queue named after it and report under that name. Stop the agents, delete the nodes, rename "
            f"the site, then reconfigure the agents with the new name."
        ]})
    for name, value in fields.items():
        setattr(site, name, value)
    if fields:
        site.save(update_fields=list(fields))
    return site


@transaction.atomic
def delete_site(actor, site: Site) -> None:
    """Remove a site from the hub (its data is untouched). Refused while it is still in use."""
    problems = []
    online = list(site.nodes.filter(last_heartbeat__gte=heartbeat_cutoff()).order_by("name")
                  .values_list("name", flat=True)[:5])
    if online:
        problems.append(f"agent nodes are still sending heartbeats: {', '.join(online)} (stop the agents first)")
    spaces = list(site.spaces.order_by("name").values_list("name", flat=True)[:5])
    if spaces:
        problems.append(f"spaces are placed on it: {', '.join(spaces)} (remove them from the site first)")
    targets = list(
        ExternalTarget.objects.filter(configured_on_sites=site).order_by("name").values_list("name", flat=True)[:5]
    )
    if targets:
        problems.append(f"external targets are configured on it: {', '.join(targets)}")
    if problems:
        raise Conflict(f"Site '{site.name}' cannot be deleted: " + "; ".join(problems) + ".")
    # Grants are generic rows that do not cascade; drop them with the site.
    permissions.forget_object(site)
    site.delete()


@transaction.atomic
def rotate_agent_key(actor, site: Site) -> Site:
    """Give ``site`` a new agent key and re-send its targets sealed with it."""
    from sites.models import new_agent_key
    from sites.services.targets import reconfigure_site_targets

    site.agent_key = new_agent_key()
    site.save(update_fields=["agent_key"])
    reconfigure_site_targets(actor, site)
    return site
