"""NFS exports and SMB shares of a space, pushed to the space's sites by their agents."""

from __future__ import annotations

import uuid

from django.db import models

from sites.models.spaces import Space


class NfsShare(models.Model):
    """An NFS export of a directory inside a space, with one row per client host spec.

    ``path`` is absolute and inside the space's mountpoint. ``fsid`` is optional; when given it
    is unique, because two exports with one fsid make NFS clients see the wrong filesystem.
    """

    # Whoever may see / change the space may see / change this (hub.permissions).
    permission_parents = ("space",)

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="nfs_shares")
    name = models.CharField(max_length=100, blank=True, default="")
    path = models.CharField(max_length=4096)
    fsid = models.PositiveIntegerField(null=True, blank=True, unique=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        ordering = ["space__name", "path"]
        constraints = [models.UniqueConstraint(fields=["space", "path"], name="unique_nfs_export_path")]

    def __str__(self) -> str:
        return self.name or self.path


class NfsClient(models.Model):
    """Who may mount an NFS export and how (one line of the export's client list)."""

    # Whoever may see / change the nfs_share may see / change this (hub.permissions).
    permission_parents = ("nfs_share",)

    nfs_share = models.ForeignKey(NfsShare, on_delete=models.CASCADE, related_name="clients")
    hosts = models.CharField(max_length=255)
    read_only = models.BooleanField(default=True)
    subtree_check = models.BooleanField(default=False)
    asynchronous = models.BooleanField(default=False)
    write_delay = models.BooleanField(default=True)
    insecure_ports = models.BooleanField(default=False)
    force_root_user_id = models.BooleanField(default=True)  # root_squash
    force_all_user_id = models.BooleanField(default=False)  # all_squash
    # NFS ids are unsigned 32-bit: a BigIntegerField holds the whole range on every database.
    anonymous_user_id = models.BigIntegerField(null=True, blank=True)
    anonymous_group_id = models.BigIntegerField(null=True, blank=True)
    advanced_settings = models.JSONField(default=dict, blank=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        ordering = ["nfs_share", "id"]

    def __str__(self) -> str:
        return f"{self.nfs_share} {self.hosts}"


class SmbShare(models.Model):
    """An SMB (Samba) share of a directory inside a space.

    ``advanced_settings`` holds extra smb.conf parameters; only the ones in
    ``sites.shares.SAFE_SMB_OPTIONS`` are accepted, because a wrong verbatim option can stop
    smbd on every node of a site. ``on_sites`` names the space's sites that publish the share
    (empty: all of them).
    """

    # Whoever may see / change the space may see / change this (hub.permissions).
    permission_parents = ("space",)

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="smb_shares")
    name = models.CharField(max_length=80, unique=True)
    path = models.CharField(max_length=4096)
    read_only = models.BooleanField(default=False)
    visible = models.BooleanField(default=True)
    guest_ok = models.BooleanField(default=False)
    hosts_allow = models.JSONField(default=list, blank=True)
    hosts_deny = models.JSONField(default=list, blank=True)
    admin_users = models.JSONField(default=list, blank=True)
    allowed_users = models.JSONField(default=list, blank=True)
    create_mask = models.CharField(max_length=4, blank=True, default="0744")
    directory_mask = models.CharField(max_length=4, blank=True, default="0755")
    force_create_mode = models.CharField(max_length=4, blank=True, default="0000")
    force_directory_mode = models.CharField(max_length=4, blank=True, default="0000")
    hsm_support = models.BooleanField(default=True)
    multi_thread_reads = models.BooleanField(default=False)
    multi_thread_writes = models.BooleanField(default=False)
    root_share_locking = models.BooleanField(default=False)
    on_sites = models.JSONField(default=list, blank=True)
    advanced_settings = models.JSONField(default=dict, blank=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
