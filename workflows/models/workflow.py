"""Workflow definitions: what a job does to the paths it is given."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.db import models

WORKFLOW_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9_.-]+$", "A workflow name may hold letters, digits, '_', '-' and '.', and no spaces."
)


class Workflow(models.Model):
    """A named recipe: how to discover entries, which rule each entry follows, and the chain of
    agent tasks each rule runs (the format of ``product-notes.md``).

    ``fields`` are the typed runtime parameters a launcher fills in (``[{"name", "type",
    "label"?, "default"?, "options"?, "required"?}]``); ``filter_rules`` route each discovered
    entry to the first rule that matches it (``[{"type", "state", "include"?, "exclude"?,
    "action": [{"name": <task>, **kwargs}]}]``). A kwarg whose value is the string
    ``"{field}"`` takes that field's value at launch. ``workflows.definitions`` validates both.

    The definition is copied into each ``Job`` at launch (``definition()``), so editing or
    deleting a workflow never changes a job that ran or runs. Built-ins (``builtin``) are made by
    a migration; they may be disabled or hidden, not renamed or deleted.
    """

    class Discovery(models.TextChoices):
        RECURSIVE = "recursive", "Recursive"
        SNAPDIFF = "snapdiff", "Snapshot difference"

    name = models.CharField(max_length=100, unique=True, validators=[WORKFLOW_NAME_VALIDATOR])
    label = models.CharField(max_length=100)
    icon_classes = models.JSONField(default=list, blank=True)
    discovery = models.CharField(max_length=20, choices=Discovery.choices, null=True, blank=True)
    discovery_options = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    visible = models.BooleanField(default=True)
    external_only = models.BooleanField(default=False)
    schedule_only = models.BooleanField(default=False)
    preferred_queue = models.CharField(max_length=100, blank=True, default="")
    fields = models.JSONField(default=list, blank=True)
    filter_rules = models.JSONField(default=list, blank=True)
    builtin = models.BooleanField(default=False, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def definition(self) -> dict[str, Any]:
        """The frozen copy a job keeps of this workflow."""
        return {
            "name": self.name, "label": self.label, "discovery": self.discovery,
            "discovery_options": dict(self.discovery_options or {}), "preferred_queue": self.preferred_queue,
            "external_only": self.external_only, "fields": list(self.fields or []),
            "filter_rules": list(self.filter_rules or []),
        }
