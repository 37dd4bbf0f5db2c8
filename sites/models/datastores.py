"""Data stores (external storage endpoints), their IP addresses, and links from sites to them."""

from __future__ import annotations

from django.db import models

from hub.secrets import EncryptedTextField
from sites.models.site import Site


class DataStore(models.Model):
    """An external storage endpoint a site can link a directory to (the reference's DataStore).

    Credentials are encrypted at rest and never returned, exactly like a bucket's.
    """

    class Type(models.TextChoices):
        S3 = "s3", "Amazon S3 or S3-compatible"
        AZURE = "azure", "Azure Blob Storage"
        GCS = "gcs", "Google Cloud Storage"
        NFS = "nfs", "NFS server"
        SMB = "smb", "SMB server"
        FS = "fs", "POSIX folder"

    name = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=10, choices=Type.choices)
    endpoint = models.CharField(max_length=255, blank=True, default="")
    bucket = models.CharField(max_length=255, blank=True, default="")
    region = models.CharField(max_length=64, blank=True, default="")
    accesskeyid = EncryptedTextField()
    secretaccesskey = EncryptedTextField()
    storageaccount = models.CharField(max_length=64, blank=True, default="")
    container = models.CharField(max_length=63, blank=True, default="")
    accesskey = EncryptedTextField()
    credentialsfile = models.CharField(max_length=4096, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IPAddress(models.Model):
    """An IPv4 address at which a data store is reachable."""

    # Whoever may see / change the datastore may see / change this (hub.permissions).
    permission_parents = ("datastore",)

    datastore = models.ForeignKey(DataStore, on_delete=models.CASCADE, related_name="ipaddresses")
    ipaddr = models.GenericIPAddressField(protocol="IPv4")

    class Meta:
        ordering = ["datastore__name", "ipaddr"]
        constraints = [models.UniqueConstraint(fields=["datastore", "ipaddr"], name="unique_ip_per_datastore")]

    def __str__(self) -> str:
        return self.ipaddr


class SiteLink(models.Model):
    """Links a directory of a site to a path on a data store."""

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="sitelinks")
    datastore = models.ForeignKey(DataStore, on_delete=models.CASCADE, related_name="sitelinks")
    site_path = models.CharField(max_length=4096)
    datastore_path = models.CharField(max_length=4096)

    class Meta:
        ordering = ["site__name", "site_path"]
        constraints = [
            models.UniqueConstraint(fields=["site", "datastore", "site_path"], name="unique_sitelink_path")
        ]

    def __str__(self) -> str:
        return f"{self.site}:{self.site_path} -> {self.datastore}:{self.datastore_path}"
