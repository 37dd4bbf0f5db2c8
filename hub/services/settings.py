"""Global settings: stored in the hub, pushed to each site's agent."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError

from hub.models import GlobalSetting
from sites.models import Site
from sites.services.sites import push_site_settings


def apply_global_settings(actor, values: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Store each ``{key, value}``; a ``None`` value deletes the key. Returns what changed."""
    changes: dict[str, list[Any]] = {}
    existing = {row.key: row for row in GlobalSetting.objects.filter(key__in=[v["key"] for v in values])}
    for item in values:
        key, value = item["key"], item["value"]
        old = existing.get(key)
        if value is None:
            if old is not None:
                old.delete()
                changes[key] = [old.value, None]
            continue
        if old is None:
            GlobalSetting.objects.create(key=key, value=value)
            changes[key] = [None, value]
        elif old.value != value:
            changes[key] = [old.value, value]
            old.value = value
            old.save(update_fields=["value", "updated"])
    return changes


def resolve_site(name: str | None) -> Site | None:
    if name is None:
        return None
    site = Site.objects.filter(name=name).first()
    if site is None:
        raise ValidationError({"site": [f"No site named '{name}'."]})
    return site


def push_global_settings(actor, *, site: Site | None) -> list[dict[str, Any]]:
    """Send the settings to ``site`` (or every site) and return ``[{site, task_id}]``.

    Each site gets an ``apply_settings`` task carrying its effective settings (global ones
    overridden by the site's own); the orders are published after the request's commit.
    """
    targets = [site] if site is not None else list(Site.objects.order_by("name"))
    return [
        {"site": target.name, "task_id": str(push_site_settings(actor, target).task_id)}
        for target in targets
    ]
