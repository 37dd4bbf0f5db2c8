"""Spaces: a directory tree (usually a GPFS fileset) present at the same path on one or more sites."""

from __future__ import annotations

import uuid

from django.db import models

from sites.models.inventory import StoragePool
from sites.models.site import Site


class Space(models.Model):
    """A managed directory tree with quota, snapshot schedule, shares and external targets.

    ``mountpoint`` is normalised and absolute, and never changes after creation: jobs, shares,
    stubs' remote keys and users' scripts all refer to it. An ``immutable`` space (the default
    space) can be neither changed nor deleted. Data never moves between a space's sites unless
    a workflow or schedule moves it.
    """

    # Whoever may see / change the sites may see / change this (hub.permissions).
    permission_parents = ("sites",)

    class PermissionMode(models.TextChoices):
        # GPFS --allow-permission-change modes; on POSIX sites only chmod semantics exist.
        CHMOD_AND_SET_ACL = "chmodAndSetAcl", "chmod and set ACL"
        CHMOD_AND_UPDATE_ACL = "chmodAndUpdateAcl", "chmod and update ACL"
        CHMOD_ONLY = "chmodOnly", "chmod only"
        SET_ACL_ONLY = "setAclOnly", "set ACL only"

    name = models.CharField(max_length=100, unique=True)
    mountpoint = models.CharField(max_length=4096)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    sites = models.ManyToManyField(Site, through="SpaceSite", related_name="spaces", blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    permission_mode = models.CharField(
        max_length=30, choices=PermissionMode.choices, default=PermissionMode.CHMOD_AND_SET_ACL
    )
    color = models.JSONField(default=list, blank=True)
    immutable = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SpaceSite(models.Model):
    """A space on one site: its storage pool there, and whether the agent has made it ready."""

    # Whoever may see / change the space may see / change this (hub.permissions).
    permission_parents = ("space",)

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="placements")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="space_placements")
    pool = models.ForeignKey(StoragePool, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    ready = models.BooleanField(default=False)
    used_space = models.BigIntegerField(default=0)
    used_files = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["space__name", "site__name"]
        constraints = [models.UniqueConstraint(fields=["space", "site"], name="unique_space_per_site")]

    def __str__(self) -> str:
        return f"{self.space}@{self.site}"


class SnapshotSchedule(models.Model):
    """When the agent snapshots a space and how long snapshots are kept (``duration``: ``7d``)."""

    class Frequency(models.TextChoices):
        HOURLY = "hourly", "Hourly"
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"

    space = models.OneToOneField(Space, on_delete=models.CASCADE, related_name="snapshot_schedule")
    frequency = models.CharField(max_length=10, choices=Frequency.choices)
    time = models.CharField(max_length=5)
    duration = models.CharField(max_length=10)

    def __str__(self) -> str:
        return f"{self.space}: {self.frequency} at {self.time}, keep {self.duration}"
