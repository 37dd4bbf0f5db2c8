"""Hub-wide configuration values, global site settings and feature flags."""

from __future__ import annotations

from django.db import models


class ConfigurationValue(models.Model):
    """One overridden key of ``/api/configurations/``.

    Only keys an admin changed are stored; the rest come from the defaults in
    ``hub.configuration.CONFIGURATION_KEYS``, so a new release can add keys without a migration.
    """

    key = models.CharField(max_length=100, unique=True)
    value = models.JSONField()
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class GlobalSetting(models.Model):
    """A global key-value setting pushed to every site (e.g. ``ngenea:realm``)."""

    key = models.CharField(max_length=255, unique=True)
    value = models.JSONField(null=True)
    desc = models.CharField(max_length=500, blank=True, default="")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class Feature(models.Model):
    """A feature flag. Rows are kept in step with ``hub.features.FEATURES`` after each migrate."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
