"""Writing the audit trail.

Views call ``record`` (the base viewset does it for every create, update, delete and action).
The event is written in the request's transaction, so a change that rolls back leaves no audit
row claiming it happened, and a change that commits always has one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.db import models

from hub.models import AuditEvent, ClientKey

REDACTED = "[redacted]"
# Field names whose values never reach the trail, whatever the serializer says.
SECRET_MARKERS = ("password", "secret", "token", "api_key", "access_key", "credentials", "private")


def is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def redact(data: Any) -> Any:
    """A copy of ``data`` with the value of every secret-looking key replaced."""
    if isinstance(data, Mapping):
        return {key: (REDACTED if is_secret_field(str(key)) else redact(value)) for key, value in data.items()}
    if isinstance(data, list):
        return [redact(item) for item in data]
    return data


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for the top-level fields whose representation changed."""
    changes: dict[str, list[Any]] = {}
    for key in sorted(set(before) | set(after)):
        if key in ("url",):
            continue
        old, new = before.get(key), after.get(key)
        if old != new:
            changes[key] = [old, new]
    return redact(changes)


def client_ip(request) -> str | None:
    """The caller's address. X-Forwarded-For is trusted only when the hub sits behind a proxy
    that sets it (HUB_TRUST_X_FORWARDED_FOR); otherwise anyone could forge their address."""
    from django.conf import settings

    candidate = None
    if getattr(settings, "HUB_TRUST_X_FORWARDED_FOR", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        candidate = forwarded.split(",")[0].strip() or None
    candidate = candidate or request.META.get("REMOTE_ADDR")
    try:
        return str(ipaddress.ip_address(candidate)) if candidate else None
    except ValueError:
        return None


def record(
    request,
    action: str,
    *,
    instance: models.Model | None = None,
    model: type[models.Model] | None = None,
    object_pk: Any = None,
    verb: str = "",
    object_repr: str | None = None,
    changes: Mapping[str, Any] | None = None,
    status_code: int | None = None,
    username: str | None = None,
) -> AuditEvent:
    """Write one audit event for ``request``; the actor is the authenticated user and key."""
    user = getattr(request, "user", None)
    user = user if getattr(user, "is_authenticated", False) else None
    auth = getattr(request, "auth", None)
    client_key = auth if isinstance(auth, ClientKey) else None
    model = model or (type(instance) if instance is not None else None)
    if instance is not None and object_pk is None:
        object_pk = instance.pk
    return AuditEvent.objects.create(
        user=user,
        username=username if username is not None else (user.get_username() if user else ""),
        client_key=client_key,
        client_key_name=client_key.name if client_key else "",
        action=action,
        verb=verb,
        model=model._meta.label_lower if model is not None else "",
        object_pk="" if object_pk is None else str(object_pk)[:255],
        object_repr=(object_repr if object_repr is not None else (str(instance) if instance is not None else ""))[:255],
        changes=redact(dict(changes or {})),
        ip_address=client_ip(request),
        method=request.method or "",
        path=request.get_full_path()[:500],
        status_code=status_code,
    )
