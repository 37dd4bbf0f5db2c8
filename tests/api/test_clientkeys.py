"""Client keys: shown once, stored hashed, revoked at once, expiry honoured, owner-only."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from hub.models import ClientKey, Feature
from tests.api.matrix import PermissionMatrix, third_party_user
from tests.factories import client_key

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


class TestClientKeyPermissions(PermissionMatrix):
    basename = "clientkey"
    outsider_may_create = True
    update_field = "name"

    def make_target(self):
        key, _ = client_key(third_party_user(), "someone-else's key")
        return key

    def create_payload(self):
        return {"name": "nightly-ingest"}

    def update_payload(self):
        return {"name": "renamed"}

    def bad_payloads(self):
        return [
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "x" * 151}, "name"),
            ({"name": ["list"]}, "name"),
            ({"name": "ok", "expires_at": "yesterday"}, "expires_at"),
            ({"name": "ok", "expires_at": (timezone.now() - timedelta(days=1)).isoformat()}, "expires_at"),
        ]


def key_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def test_key_is_shown_once_and_only_its_hash_is_stored(member):
    created = member.post(reverse("clientkey-list"), {"name": "ci"}, format="json")
    assert created.status_code == 201
    raw = created.json()["api_key"]
    key = ClientKey.objects.get(pk=created.json()["id"])
    prefix, _, secret = raw.partition(".")
    assert key.prefix == prefix
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ClientKey.objects.filter(pk=key.pk).values().get())
    # Never again: not on read, not in the list.
    assert member.get(reverse("clientkey-detail", args=[key.pk])).json()["api_key"] is None
    assert all(item["api_key"] is None for item in member.get(reverse("clientkey-list")).json()["results"])


def test_key_authenticates_as_its_owner_on_every_endpoint(member_user):
    _, raw = client_key(member_user)
    client = key_client(raw)
    me = client.get(reverse("user-detail", args=[member_user.username]))
    assert me.status_code == 200 and me.json()["username"] == member_user.username
    assert client.get(reverse("my-permissions")).status_code == 200
    assert client.get(reverse("configurations")).status_code == 200
    assert client.get(reverse("feature-list")).status_code == 200
    assert client.get(reverse("clientkey-list")).status_code == 200


def test_deleted_key_stops_working_at_once(member, member_user):
    key, raw = client_key(member_user)
    client = key_client(raw)
    assert client.get(reverse("clientkey-list")).status_code == 200
    assert member.delete(reverse("clientkey-detail", args=[key.pk])).status_code == 204
    assert client.get(reverse("clientkey-list")).status_code == 401


def test_expired_key_is_refused(member_user):
    key, raw = client_key(member_user, expires_at=timezone.now() + timedelta(hours=1))
    assert key_client(raw).get(reverse("clientkey-list")).status_code == 200
    ClientKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = key_client(raw).get(reverse("clientkey-list"))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_wrong_secret_with_a_valid_prefix_is_refused(member_user):
    key, raw = client_key(member_user)
    forged = f"{key.prefix}.{'A' * 43}"
    assert key_client(forged).get(reverse("clientkey-list")).status_code == 401
    assert key_client("garbage").get(reverse("clientkey-list")).status_code == 401


def test_key_of_an_inactive_user_is_refused(member_user):
    _, raw = client_key(member_user)
    member_user.is_active = False
    member_user.save()
    assert key_client(raw).get(reverse("clientkey-list")).status_code == 401


def test_last_used_is_recorded(member_user):
    key, raw = client_key(member_user)
    assert key.last_used is None
    key_client(raw).get(reverse("clientkey-list"))
    key.refresh_from_db()
    assert key.last_used is not None and timezone.now() - key.last_used < timedelta(minutes=1)


def test_user_sees_only_their_own_keys_and_admin_sees_all(member, member_user, admin, outsider_user):
    mine, _ = client_key(member_user, "mine")
    theirs, _ = client_key(outsider_user, "theirs")
    member_ids = {k["id"] for k in member.get(reverse("clientkey-list")).json()["results"]}
    assert member_ids == {mine.pk}
    admin_ids = {k["id"] for k in admin.get(reverse("clientkey-list")).json()["results"]}
    assert {mine.pk, theirs.pk} <= admin_ids


def test_owner_can_rename_and_set_expiry_but_not_reassign(member, member_user):
    key, _ = client_key(member_user)
    url = reverse("clientkey-detail", args=[key.pk])
    expiry = (timezone.now() + timedelta(days=30)).isoformat()
    response = member.patch(url, {"name": "renamed", "expires_at": expiry, "user": "someone"}, format="json")
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.name == "renamed" and key.expires_at is not None and key.user == member_user


def test_disabling_the_client_keys_feature_refuses_every_key(member_user):
    _, raw = client_key(member_user)
    Feature.objects.filter(name="client_keys").update(enabled=False)
    assert key_client(raw).get(reverse("clientkey-list")).status_code == 401
