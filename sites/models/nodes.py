"""Agent nodes and the Celery queues they consume; both are written by agent heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from sites.models.site import NAME_VALIDATOR, Site

DEFAULT_QUEUE = "default"


def heartbeat_cutoff(now: datetime | None = None) -> datetime:
    """Heartbeats older than this mean the node is offline (``node_health_last_heartbeat_interval``)."""
    from hub import configuration

    interval = int(configuration.get("node_health_last_heartbeat_interval"))
    return (now or timezone.now()) - timedelta(seconds=interval)


class Queue(models.Model):
    """A site's Celery queue. Every site has ``default``; others are named function queues.

    The broker-level queue name is ``<site>`` for the default queue and ``<site>.<queue>`` for a
    function queue, so two sites can both have a ``discovery`` queue without sharing workers.
    ``last_heartbeat`` is the newest heartbeat of any node consuming the queue.
    """

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="queues")
    name = models.CharField(max_length=100, validators=[NAME_VALIDATOR])
    label = models.CharField(max_length=200, blank=True, default="")
    last_heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["site__name", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_queue_per_site")]

    def __str__(self) -> str:
        return self.broker_name

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_QUEUE

    @property
    def broker_name(self) -> str:
        return broker_queue_name(self.site.name, self.name)


def broker_queue_name(site_name: str, queue_name: str = DEFAULT_QUEUE) -> str:
    return site_name if queue_name == DEFAULT_QUEUE else f"{site_name}.{queue_name}"


class Node(models.Model):
    """A storage node running the site's agent. Created by its first heartbeat.

    ``online`` is derived at read time from ``last_heartbeat`` so it can never be stale in the
    database; ``info`` keeps what the agent says about itself (version, pid, concurrency).
    """

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=255)
    queues = models.ManyToManyField(Queue, related_name="nodes", blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True, db_index=True)
    info = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site__name", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_node_per_site")]

    def __str__(self) -> str:
        return f"{self.site}/{self.name}"

    def is_online(self, cutoff: datetime | None = None) -> bool:
        return self.last_heartbeat is not None and self.last_heartbeat >= (cutoff or heartbeat_cutoff())
