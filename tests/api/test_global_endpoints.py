"""The permission matrix for endpoints that are not per-object (configuration, flags, audit...).

Every endpoint of the platform answers anonymous callers 401, lets signed-in users read what is
not secret, keeps writes for administrators (403 otherwise), and accepts an administrator's
client key exactly like a token.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

# (url name, args, who may read: "user" or "admin", write method or None, valid write payload)
ENDPOINTS = [
    ("configurations", [], "user", "patch", {"jobs_ttl": 60}),
    ("settings", [], "user", "patch", {"values": [{"key": "a:b", "value": 1}]}),
    ("settings-sync", [], None, "post", None),
    ("feature-list", [], "user", None, None),
    ("feature-detail", ["client_keys"], "user", "patch", {"enabled": True}),
    ("permission-list", [], "user", None, None),
    ("my-permissions", [], "user", None, None),
    ("auditevent-list", [], "admin", None, None),
    ("user-sync", [], None, "post", None),
    ("group-sync", [], None, "post", None),
]
IDS = [name for name, *_ in ENDPOINTS]


def call(client, method, url, payload):
    return getattr(client, method)(url, payload, format="json") if payload is not None else getattr(client, method)(url)


@pytest.mark.parametrize("name, args, readers, write, payload", ENDPOINTS, ids=IDS)
def test_anonymous_gets_401(anon, name, args, readers, write, payload):
    url = reverse(name, args=args)
    if readers:
        assert anon.get(url).status_code == 401
    if write:
        assert call(anon, write, url, payload).status_code == 401


@pytest.mark.parametrize("name, args, readers, write, payload", ENDPOINTS, ids=IDS)
def test_signed_in_user_reads_if_allowed_and_never_writes(outsider, name, args, readers, write, payload):
    url = reverse(name, args=args)
    if readers:
        assert outsider.get(url).status_code == (200 if readers == "user" else 403)
    if write:
        assert call(outsider, write, url, payload).status_code == 403


@pytest.mark.parametrize("name, args, readers, write, payload", ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("persona", ["admin", "admin_key_client"])
def test_admin_reads_and_writes_with_token_or_client_key(request, persona, name, args, readers, write, payload):
    client = request.getfixturevalue(persona)
    url = reverse(name, args=args)
    if readers:
        assert client.get(url).status_code == 200
    if write:
        assert call(client, write, url, payload).status_code in (200, 202)
