"""Look-up tables for the file browser: HSM file states and search tags."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

COLOR_VALIDATOR = RegexValidator(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", "Use a hex colour such as '#1f77b4'.")


class FileStatusType(models.Model):
    """How the UI shows one HSM state (``migrated``, ``premigrated``...). Seeded by a migration;
    administrators may relabel and recolour them but the keys are fixed, because agents report
    states by key."""

    key = models.CharField(max_length=50, primary_key=True)
    label = models.CharField(max_length=100)
    background_color = models.CharField(max_length=7, validators=[COLOR_VALIDATOR])
    text_color = models.CharField(max_length=7, validators=[COLOR_VALIDATOR])

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class Tag(models.Model):
    """A search tag attached to files' metadata (``/api/tags/`` lists them for completion)."""

    name = models.CharField(max_length=255, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
