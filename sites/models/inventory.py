"""What the agent discovers on its site: servers, filesystems, storage pools and filesets.

These rows are read-only in the API. The agent's inventory report replaces a site's set in one
transaction (``sites.services.inventory.apply_inventory``), so a reader never sees half of an
old report mixed with half of a new one.
"""

from __future__ import annotations

from django.db import models

from sites.models.site import Site


class Server(models.Model):
    """A host in the site's cluster and its network interfaces (``[{name, addresses, speed}]``)."""

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="servers")
    name = models.CharField(max_length=255)
    list_of_interfaces = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["site__name", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_server_per_site")]

    def __str__(self) -> str:
        return f"{self.site}/{self.name}"


class Filesystem(models.Model):
    """A mounted filesystem on a site (a GPFS device or a POSIX mount)."""

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="filesystems")
    name = models.CharField(max_length=255)
    mountpoint = models.CharField(max_length=4096)
    fstype = models.CharField(max_length=50, blank=True, default="")
    capacity = models.BigIntegerField(default=0)
    used_space = models.BigIntegerField(default=0)
    free_space = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["site__name", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_filesystem_per_site")]

    def __str__(self) -> str:
        return f"{self.site}/{self.name}"


class StoragePool(models.Model):
    """A storage pool of a filesystem (GPFS ``system``/``data``; a POSIX mount has one)."""

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="storage_pools")
    filesystem = models.ForeignKey(Filesystem, on_delete=models.CASCADE, related_name="pools")
    name = models.CharField(max_length=255)
    capacity = models.BigIntegerField(default=0)
    used_space = models.BigIntegerField(default=0)
    free_space = models.BigIntegerField(default=0)
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["site__name", "filesystem__name", "name"]
        constraints = [models.UniqueConstraint(fields=["filesystem", "name"], name="unique_pool_per_filesystem")]

    def __str__(self) -> str:
        return f"{self.filesystem}/{self.name}"


class Fileset(models.Model):
    """A GPFS fileset (or a quota tree) with its junction path and quotas (0 = none)."""

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="filesets")
    filesystem = models.ForeignKey(Filesystem, on_delete=models.CASCADE, related_name="filesets")
    name = models.CharField(max_length=255)
    path = models.CharField(max_length=4096, blank=True, default="")
    status = models.CharField(max_length=50, blank=True, default="")
    block_quota = models.BigIntegerField(default=0)
    block_usage = models.BigIntegerField(default=0)
    files_quota = models.BigIntegerField(default=0)
    files_usage = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["site__name", "filesystem__name", "name"]
        constraints = [models.UniqueConstraint(fields=["filesystem", "name"], name="unique_fileset_per_filesystem")]

    def __str__(self) -> str:
        return f"{self.filesystem}/{self.name}"
