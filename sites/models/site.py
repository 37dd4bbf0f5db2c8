"""Sites: one storage cluster each, with its own agent, and the settings pushed to it."""

from __future__ import annotations

import zoneinfo

from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from hub.secrets import EncryptedTextField

NAME_VALIDATOR = RegexValidator(r"^[a-zA-Z0-9_-]+$", "Use only letters, digits, '-' and '_'.")


def new_agent_key() -> str:
    return Fernet.generate_key().decode()


def validate_timezone(value: str) -> None:
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not an IANA time zone name (e.g. 'Europe/London').")


class Site(models.Model):
    """A storage cluster (GPFS/PixStor or any POSIX filesystem) served by its own agent.

    The file and directory counts are written by the agent's inventory report; nothing in the
    hub computes them. ``include``/``exclude`` are glob lists applied to every workflow run on
    the site unless a request asks to ignore them.
    """

    class Type(models.TextChoices):
        ON_PREMISES = "onprem", "On premises"
        AWS = "aws", "Amazon Web Services"
        AZURE = "azure", "Microsoft Azure"
        GCP = "gcp", "Google Cloud"
        OTHER = "other", "Other"

    class FilesystemType(models.TextChoices):
        POSIX = "posix", "POSIX filesystem with user extended attributes"
        GPFS = "gpfs", "IBM Storage Scale (GPFS) / PixStor"

    name = models.CharField(max_length=100, unique=True, validators=[NAME_VALIDATOR])
    label = models.CharField(max_length=200, blank=True, default="")
    shortcode = models.CharField(max_length=20, unique=True, validators=[NAME_VALIDATOR])
    description = models.CharField(max_length=500, blank=True, default="")
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.ON_PREMISES)
    filesystem_type = models.CharField(max_length=10, choices=FilesystemType.choices, default=FilesystemType.POSIX)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    color = models.JSONField(default=list, blank=True)
    public_url = models.URLField(max_length=500, blank=True, default="")
    pixstor_search_url = models.URLField(max_length=500, blank=True, default="")
    elasticsearch_url = models.URLField(max_length=500, blank=True, default="")
    am_i_configured = models.BooleanField(default=False)
    ready_to_configure = models.BooleanField(default=False)
    include = models.JSONField(default=list, blank=True)
    exclude = models.JSONField(default=list, blank=True)
    file_batch_size = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(100_000)]
    )
    file_batch_gb = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(10_000)]
    )
    enable_auto_file_batch_sizing = models.BooleanField(default=False)
    gpfs_iscan_buckets = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(1024)]
    )
    gpfs_iscan_threads = models.PositiveIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(256)]
    )
    lock_threshold = models.PositiveIntegerField(default=0)
    bandwidth = models.PositiveIntegerField(null=True, blank=True)
    files_count = models.BigIntegerField(default=0)
    directories_count = models.BigIntegerField(default=0)
    files_hydrated_count = models.BigIntegerField(default=0)
    files_stubbed_count = models.BigIntegerField(default=0)
    inventory_updated = models.DateTimeField(null=True, blank=True)
    # Shared by the hub and the site's agents only: seals credentials inside orders (see
    # agent.contract.TargetOrder). Installed with the agent (``manage.py agent_key <site>``).
    agent_key = EncryptedTextField(default=new_agent_key)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SiteSetting(models.Model):
    """One key of a site's settings (``samba:realm``), stored in the hub and pushed to the agent."""

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="settings")
    key = models.CharField(max_length=255)
    value = models.JSONField(null=True)
    desc = models.CharField(max_length=500, blank=True, default="")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "key"]
        constraints = [models.UniqueConstraint(fields=["site", "key"], name="unique_site_setting_key")]

    def __str__(self) -> str:
        return f"{self.site}:{self.key}"
