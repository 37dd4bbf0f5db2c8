"""Heartbeats from agent nodes, site health derived from them, and the hub's own health checks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hub import permissions
from hub.api.exceptions import Conflict
from sites.models import DEFAULT_QUEUE, NAME_VALIDATOR, Node, Queue, Site, heartbeat_cutoff

logger = logging.getLogger(__name__)

OK, WARNING, CRITICAL = "ok", "warning", "critical"
_SEVERITY = {OK: 0, WARNING: 1, CRITICAL: 2}
# A health probe must answer quickly even when the broker host is gone (a monitoring system
# polls it, and a hung probe would hold a web worker).
BROKER_CHECK_TIMEOUT = 2.0


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
    if not node_name or len(node_name) > 255 or "/" in node_name:
        raise HeartbeatRejected("a heartbeat needs a node name of at most 255 characters, without '/'")
    raw_queues = beat.get("queues") or [DEFAULT_QUEUE]
    if not isinstance(raw_queues, list):
        # A bare string would otherwise be read as one queue per character.
        raise HeartbeatRejected(f"queues must be a list of names, not {type(raw_queues).__name__}")
    queue_names = list(dict.fromkeys(str(q) for q in raw_queues))
    for name in queue_names:
        try:
            NAME_VALIDATOR(name)
        except Exception as exc:
            raise HeartbeatRejected(f"bad queue name {name!r}") from exc
        if len(name) > Queue._meta.get_field("name").max_length:
            raise HeartbeatRejected(f"queue name {name[:20]!r}... is too long")
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


@transaction.atomic
def delete_node(actor, node: Node) -> None:
    """Forget a node that has stopped beating (decommissioned host, renamed machine).

    Refused while the node is online: it would reappear with its next heartbeat, and deleting it
    would not stop the agent. The delete is conditional on the heartbeat being old, so a beat
    arriving between the check and the delete cannot be lost.
    """
    cutoff = heartbeat_cutoff()
    permissions.forget_object(node)
    deleted, _ = (
        Node.objects.filter(pk=node.pk)
        .filter(Q(last_heartbeat__isnull=True) | Q(last_heartbeat__lt=cutoff))
        .delete()
    )
    if not deleted:
        raise Conflict(
            f"Node '{node.name}' is online (it sent a heartbeat less than "
            f"{int((timezone.now() - cutoff).total_seconds())} s ago). Stop its agent first; it can be deleted "
            f"once it has been silent for that long."
        )


def worst(statuses: Iterable[str]) -> str:
    """The most severe of ``ok`` / ``warning`` / ``critical`` (``ok`` for none)."""
    return max(statuses, key=_SEVERITY.__getitem__, default=OK)


def _timed(probe: Callable[[], str], timeout: float) -> dict[str, Any]:
    """Run ``probe`` in a daemon thread, giving up after ``timeout`` seconds.

    Client libraries do not all honour a connect timeout (DNS lookups, TLS handshakes), so the
    bound is enforced here; a probe that overruns is left to finish on its own.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["detail"] = probe()
            outcome["status"] = OK
        except Exception as exc:  # noqa: BLE001 - any failure of the dependency is the answer
            outcome["detail"] = f"{type(exc).__name__}: {exc}"
            outcome["status"] = CRITICAL

    started = time.monotonic()
    thread = threading.Thread(target=run, name="health-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    elapsed = round(time.monotonic() - started, 3)
    if thread.is_alive() or "status" not in outcome:
        return {"status": CRITICAL, "detail": f"No answer within {timeout:g} s.", "seconds": elapsed}
    return {"status": outcome["status"], "detail": outcome["detail"], "seconds": elapsed}


def check_database() -> dict[str, Any]:
    """Whether the hub's database answers a trivial query (run in the caller's connection)."""
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        status, detail = OK, f"{connection.vendor} reachable."
    except Exception as exc:  # noqa: BLE001 - any failure of the database is the answer
        status, detail = CRITICAL, f"{type(exc).__name__}: {exc}"
    return {"status": status, "detail": detail, "seconds": round(time.monotonic() - started, 3)}


def check_broker(timeout: float = BROKER_CHECK_TIMEOUT) -> dict[str, Any]:
    """Whether the Celery broker accepts a connection, bounded by ``timeout`` seconds."""

    def probe() -> str:
        from hub.celery import app

        with app.connection_for_write(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            return f"{conn.transport_cls} reachable."

    return _timed(probe, timeout)


def hub_checks() -> dict[str, dict[str, Any]]:
    """The hub's own dependencies: ``{"database": {...}, "broker": {...}}``."""
    return {"database": check_database(), "broker": check_broker()}


def overall_health(sites: list[Site]) -> dict[str, Any]:
    """Hub checks plus the health of ``sites`` (those the caller may view); status is the worst."""
    checks = hub_checks()
    by_site = sites_health(sites)
    site_rows = [{"site": site, **by_site[site.pk]} for site in sites]
    status = worst([*(check["status"] for check in checks.values()), *(row["status"] for row in site_rows)])
    return {"status": status, "checks": checks, "sites": site_rows, "checked": timezone.now().isoformat()}
