"""Buckets (where remote copies live) and external targets (which space's files go to which bucket)."""

from __future__ import annotations

from django.db import models

from hub.secrets import EncryptedTextField
from sites.models.site import Site
from sites.models.spaces import Space


class Bucket(models.Model):
    """An object store location and its credentials.

    The credential columns are ``EncryptedTextField``: encrypted before they reach the database
    and never returned by the API (see ``sites.api.serializers.buckets``). The fields that apply
    depend on ``storage_type``; each type's serializer says which are required.
    """

    class StorageType(models.TextChoices):
        S3 = "s3", "Amazon S3 or S3-compatible"
        AZURE = "azure", "Azure Blob Storage"
        GCS = "gcs", "Google Cloud Storage"
        FS = "fs", "POSIX folder"

    # The encrypted, write-only columns: masked in the API, sealed in orders, never in task rows.
    SECRET_FIELDS = ("access_key_id", "secret_access_key", "access_key", "credentials_json")

    name = models.CharField(max_length=255, db_index=True)
    label = models.CharField(max_length=255, blank=True, default="")
    storage_type = models.CharField(max_length=10, choices=StorageType.choices, db_index=True)
    endpoint = models.CharField(max_length=255, blank=True, default="")
    port = models.PositiveIntegerField(null=True, blank=True)
    scheme = models.CharField(max_length=5, blank=True, default="")
    region = models.CharField(max_length=64, blank=True, default="")
    ssl_verify = models.BooleanField(default=True)
    access_key_id = EncryptedTextField()
    secret_access_key = EncryptedTextField()
    storage_account = models.CharField(max_length=64, blank=True, default="")
    container = models.CharField(max_length=63, blank=True, default="")
    access_key = EncryptedTextField()
    credentials_file = models.CharField(max_length=4096, blank=True, default="")
    credentials_json = EncryptedTextField()
    migration_target_folder = models.CharField(max_length=4096, blank=True, default="")
    advanced_settings = models.JSONField(default=dict, blank=True)
    soft_deleting = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.label or self.name


class ExternalTarget(models.Model):
    """Maps a space to a bucket: files of the space matching ``local_file_regex`` go there.

    ``available_on_sites`` are the sites whose agents are configured with the target;
    ``configured_on_sites`` are those whose agents confirmed it, so ``is_ready`` means every
    site that should have the target has it.
    """

    # Whoever may see / change the space may see / change this (hub.permissions).
    permission_parents = ("space",)

    name = models.CharField(max_length=255, unique=True)
    bucket = models.ForeignKey(Bucket, on_delete=models.PROTECT, related_name="external_targets")
    space = models.ForeignKey(Space, on_delete=models.PROTECT, related_name="external_targets")
    local_file_regex = models.CharField(max_length=1000)
    available_on_sites = models.ManyToManyField(Site, related_name="external_targets", blank=True)
    configured_on_sites = models.ManyToManyField(Site, related_name="+", blank=True)
    backup_only = models.BooleanField(default=False)
    backup_site = models.ForeignKey(Site, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    delete_on_recall = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    advanced_settings = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def endpoint_name(self) -> str:
        """The name agents know the target by: stable, unique, and safe as a config key."""
        return f"{self.bucket.storage_type}-{self.pk}-{self.name}"
