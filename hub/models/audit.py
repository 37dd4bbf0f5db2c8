"""The audit trail: who changed what, when, from where."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One create, update, delete or action call made through the API.

    The actor's username and the client key's name are copied, not only linked, so the trail
    still reads correctly after the user or key is deleted. ``changes`` never holds secrets:
    ``hub.audit`` redacts them before the row is written.
    """

    class Action(models.TextChoices):
        CREATE = "create", "create"
        UPDATE = "update", "update"
        DELETE = "delete", "delete"
        ACTION = "action", "action"  # a POST verb on a resource (activate, sync, cancel, ...)
        LOGIN = "login", "login"
        LOGIN_FAILED = "login_failed", "login failed"

    timestamp = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True, default="", db_index=True)
    client_key = models.ForeignKey("hub.ClientKey", null=True, on_delete=models.SET_NULL, related_name="+")
    client_key_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=20, choices=Action.choices, db_index=True)
    verb = models.CharField(max_length=100, blank=True, default="")  # the action's name for ACTION
    model = models.CharField(max_length=100, blank=True, default="", db_index=True)  # app_label.model
    object_pk = models.CharField(max_length=255, blank=True, default="", db_index=True)
    object_repr = models.CharField(max_length=255, blank=True, default="")
    changes = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    method = models.CharField(max_length=10, blank=True, default="")
    path = models.CharField(max_length=500, blank=True, default="")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-timestamp", "-id"]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.model} {self.object_pk}"
