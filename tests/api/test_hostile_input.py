"""Hostile bodies on every write endpoint: never a 500, and a refusal never writes anything."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from hub.models import AuditEvent, ClientKey, ConfigurationValue, GlobalSetting

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

HOSTILE_BODIES = [
    "[]", "[1, 2, 3]", "0", "true", "null", '"string"', "{}",
    json.dumps({"name": {"$gt": ""}, "username": ["a"], "password": 12, "values": {"key": 1}}),
    json.dumps({"name": "x" * 100_000, "username": "y" * 100_000}),
    json.dumps({"name": "\u0000", "username": "\u0000", "enabled": "\u0000", "jobs_ttl": "\u0000"}),
    json.dumps({"jobs_ttl": 2**80, "permission": 2**80, "permissions": [2**80], "id": -1}),
    json.dumps({"object_permissions": [{"model": "user", "object_pk": "\u0000", "permission": 1}],
                "name": "n1"}),
    json.dumps({"object_permissions": [{"model": "user", "object_pk": "not-an-int", "permission": 1}],
                "name": "n2"}),
    json.dumps({"profile": {"default_site": "abc", "home_site": 2**80}, "username": "p", "password": "Pw-12345678"}),
    json.dumps({"nas_user": {"primary_group": None}, "username": "q", "password": "Pw-12345678"}),
    json.dumps({"users": [None], "name": "n3"}),
    json.dumps({"expires_at": "2999-13-45T99:99:99", "name": "k"}),
    json.dumps({"token": "", "type": "access"}),
    json.dumps({"refresh": 12}),
    json.dumps({"old_password": None, "new_password": ["x"]}),
]

WRITE_ENDPOINTS = [
    ("post", "user-list", []), ("post", "group-list", []), ("post", "clientkey-list", []),
    ("patch", "configurations", []), ("patch", "settings", []), ("patch", "feature-detail", ["client_keys"]),
    ("post", "user-change-password", []), ("post", "token-obtain", []), ("post", "token-refresh", []),
    ("post", "token-verify", []),
]


def snapshot():
    return (get_user_model().objects.count(), Group.objects.count(), ClientKey.objects.count(),
            ConfigurationValue.objects.count(), GlobalSetting.objects.count())


@pytest.mark.parametrize("method, name, args", WRITE_ENDPOINTS, ids=[n for _, n, _ in WRITE_ENDPOINTS])
def test_hostile_bodies_never_cause_a_500_and_refusals_write_nothing(admin, method, name, args):
    url = reverse(name, args=args)
    for body in HOSTILE_BODIES:
        before, events = snapshot(), AuditEvent.objects.exclude(action="login_failed").count()
        response = admin.generic(method.upper(), url, body, content_type="application/json")
        assert response.status_code < 500, (body[:80], response.status_code, response.content[:300])
        if response.status_code >= 400:
            assert snapshot() == before, body[:80]
            assert AuditEvent.objects.exclude(action="login_failed").count() == events, body[:80]


def test_hostile_object_lookups_are_404_not_500(admin):
    for name, value in (("user-detail", "%00"), ("group-detail", "abc"), ("clientkey-detail", "9" * 30),
                        ("permission-detail", "-1"), ("feature-detail", "\u00e9"), ("auditevent-detail", "1e5")):
        response = admin.get(reverse(name, args=["placeholder"]).replace("placeholder", value))
        assert response.status_code == 404, (name, value, response.status_code)


def test_nul_bytes_in_filters_are_a_400_not_a_500(admin):
    for name, params in (("user-list", {"username": "a\x00b"}), ("auditevent-list", {"model": "\x00"}),
                         ("group-list", {"name": "\x00"})):
        response = admin.get(reverse(name), params)
        assert response.status_code in (200, 400), (name, response.status_code)
