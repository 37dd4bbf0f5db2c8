"""Heartbeats from agent nodes, and site health derived from them."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sites.models import DEFAULT_QUEUE, NAME_VALIDATOR, Node, Queue, Site, heartbeat_cutoff

logger = logging.getLogger(__name__)

OK, WARNING, CRITICAL = "ok", "warning", "critical"


class HeartbeatRejected(ValueError):
    """A heartbeat that cannot be applied (unknown site, malformed names)."""


def _sent_at(value: Any) -> datetime:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    now = timezone.now()
    if parsed is None or parsed.tzinfo is None:
        return now
    # A node whose clock runs ahead must not look alive after it stops beating.
    return min(parsed, now)


@transaction.atomic
def record_heartbeat(beat: dict[str, Any]) -> Node:
    """Create or update the node and the queues it consumes from an agent's ``Heartbeat``.

    Heartbeats only move ``last_heartbeat`` forward (a delayed message cannot make a node look
    older than it is), and a node's queue set is replaced by what it says it consumes now.
    """
    site = Site.objects.filter(name=beat.get("site")).first()
    if site is None:
        raise HeartbeatRejected(f"unknown site {beat.get('site')!r}")
    node_name = str(beat.get("node") or "").strip()
    if not node_name or len(node_name) > 255:
        raise HeartbeatRejected("a heartbeat needs a node name of at most 255 characters")
    queue_names = [str(q) for q in beat.get("queues") or [DEFAULT_QUEUE]]
    for name in queue_names:
        try:
            NAME_VALIDATOR(name)
        except Exception as exc:
            raise HeartbeatRejected(f"bad queue name {name!r}") from exc
    at = _sent_at(beat.get("sent_at"))

    node, _ = Node.objects.get_or_create(site=site, name=node_name)
    Node.objects.filter(pk=node.pk).filter(last_heartbeat__isnull=True).update(last_heartbeat=at)
    Node.objects.filter(pk=node.pk, last_heartbeat__lt=at).update(last_heartbeat=at)
    if isinstance(beat.get("info"), dict):
        Node.objects.filter(pk=node.pk).update(info=beat["info"])

    queues = []
    for name in queue_names:
        queue, _ = Queue.objects.get_or_create(site=site, name=name)
        queues.append(queue)
    node.queues.set(queues)
    for queue in queues:
        Queue.objects.filter(pk=queue.pk).filter(last_heartbeat__isnull=True).update(last_heartbeat=at)
        Queue.objects.filter(pk=queue.pk, last_heartbeat__lt=at).update(last_heartbeat=at)
    node.refresh_from_db()
    return node


def ensure_default_queue(site: Site) -> Queue:
    queue, _ = Queue.objects.get_or_create(site=site, name=DEFAULT_QUEUE, defaults={"label": "Default"})
    return queue


def live_queues(site: Site) -> set[str]:
    """Names of the site's queues that at least one online node consumes."""
    cutoff = heartbeat_cutoff()
    return set(
        Queue.objects.filter(site=site, nodes__last_heartbeat__gte=cutoff).values_list("name", flat=True).distinct()
    )


def site_health(site: Site, *, now: datetime | None = None) -> dict[str, Any]:
    """``ok`` when every node is online, ``warning`` when some are not, ``critical`` when none is.

    A site with no node at all is ``critical``: nothing can run there.
    """
    now = now or timezone.now()
    cutoff = heartbeat_cutoff(now)
    nodes = list(site.nodes.order_by("name").prefetch_related("queues"))
    return _health(nodes, cutoff, now)


def _health(nodes: list[Node], cutoff: datetime, now: datetime) -> dict[str, Any]:
    detail = []
    for node in nodes:
        online = node.is_online(cutoff)
        detail.append({
            "id": node.pk,
            "name": node.name,
            "online": online,
            "last_heartbeat": node.last_heartbeat.isoformat() if node.last_heartbeat else None,
            "seconds_since_heartbeat": (
                round((now - node.last_heartbeat).total_seconds(), 1) if node.last_heartbeat else None
            ),
            "queues": sorted(q.name for q in node.queues.all()),
        })
    online = sum(1 for item in detail if item["online"])
    if not detail:
        status, reason = CRITICAL, "No agent node has ever sent a heartbeat."
    elif online == len(detail):
        status, reason = OK, "All nodes are online."
    elif online == 0:
        status, reason = CRITICAL, "No node is online."
    else:
        status, reason = WARNING, f"{len(detail) - online} of {len(detail)} nodes are offline."
    return {"status": status, "reason": reason, "online_nodes": online, "total_nodes": len(detail),
            "nodes": detail, "checked": now.isoformat()}


def sites_health(sites: list[Site]) -> dict[int, dict[str, Any]]:
    """``site_health`` for many sites in two queries (for ``/api/health/``)."""
    now = timezone.now()
    cutoff = heartbeat_cutoff(now)
    by_site: dict[int, list[Node]] = {site.pk: [] for site in sites}
    for node in Node.objects.filter(site__in=sites).order_by("name").prefetch_related("queues"):
        by_site[node.site_id].append(node)
    return {pk: _health(nodes, cutoff, now) for pk, nodes in by_site.items()}


def newest_heartbeat(site: Site) -> datetime | None:
    return site.nodes.aggregate(newest=Max("last_heartbeat"))["newest"]
