"""Site tasks: the hub's record of each piece of non-workflow work it sent to a site's agent.

Settings pushes, inventory refreshes, space directory creation, target configuration, bucket
removal and remote listings are all ``SettingsTask`` rows (the reference's ``/settingstasks/``).
The row is created first and the Celery message published after the commit; the agent's answer
comes back through the broker and is applied by ``sites.services.tasks.record_result``.

States (set by):
    PENDING  -> the hub, at creation
    STARTED  -> the agent's "started" report
    SUCCESS  -> the agent's result
    FAILURE  -> the agent's result, or the hub when the message could not be published
Every transition is a conditional UPDATE from the states it may come from, so a late or
duplicated report cannot move a finished task backwards.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from sites.models.site import Site


class SettingsTask(models.Model):

    # Whoever may see / change the site may see / change this (hub.permissions).
    permission_parents = ("site",)
    class State(models.TextChoices):
        PENDING = "PENDING", "Pending"
        STARTED = "STARTED", "Started"
        SUCCESS = "SUCCESS", "Success"
        FAILURE = "FAILURE", "Failure"

    ACTIVE_STATES = (State.PENDING, State.STARTED)
    TERMINAL_STATES = (State.SUCCESS, State.FAILURE)
    TRANSITIONS: dict[str, tuple[str, ...]] = {
        State.STARTED: (State.PENDING,),
        State.SUCCESS: (State.PENDING, State.STARTED),
        State.FAILURE: (State.PENDING, State.STARTED),
    }

    class TaskType(models.TextChoices):
        APPLY_SETTINGS = "apply_settings", "Apply settings"
        REPORT_SETTINGS = "report_settings", "Report settings"
        INVENTORY = "inventory", "Report inventory"
        CREATE_SPACE = "create_space", "Create space directory"
        APPLY_SHARES = "apply_shares", "Apply shares"
        CONFIGURE_TARGET = "configure_target", "Configure external target"
        REMOVE_TARGET = "remove_target", "Remove external target"
        LIST_TARGET = "list_target", "List external target"
        SYNC_ACCOUNTS = "sync_accounts", "Synchronise users and groups"

    task_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tasktype = models.CharField(max_length=30, choices=TaskType.choices, db_index=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="settings_tasks")
    job = models.IntegerField(null=True, blank=True, db_index=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    friendly_name = models.CharField(max_length=255, blank=True, default="")
    request = models.JSONField(default=dict, blank=True)
    results = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    completed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.tasktype}@{self.site_id} {self.state}"

    @property
    def runtime(self) -> timedelta | None:
        if self.started is None:
            return None
        return (self.completed or timezone.now()) - self.started

    def transition(self, new_state: str, **fields) -> bool:
        """Move to ``new_state`` if the row is in a state that may lead there; False otherwise."""
        allowed = self.TRANSITIONS.get(new_state, ())
        updated = SettingsTask.objects.filter(pk=self.pk, state__in=allowed).update(state=new_state, **fields)
        if updated:
            self.state = new_state
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(updated)
