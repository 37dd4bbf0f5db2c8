from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

NAME_VALIDATOR = RegexValidator(r"^[a-zA-Z0-9_-]+$", "Use only letters, digits, '-' and '_'.")


class Site(models.Model):
    """A storage cluster (GPFS/PixStor or any POSIX filesystem) with its own agent."""

    name = models.CharField(max_length=100, unique=True, validators=[NAME_VALIDATOR])
    shortcode = models.CharField(max_length=20, unique=True, validators=[NAME_VALIDATOR])
    description = models.CharField(max_length=500, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
