"""A generic permission matrix that every object endpoint's tests inherit.

A subclass names the endpoint (``basename``), builds a target object that belongs to nobody
among the personas, and gives valid and invalid payloads. The matrix then proves, per endpoint:
anonymous callers get 401; outsiders see an empty list and 404s and change nothing; a member
granted ``view`` on the object reads it but gets 403 on writes; ``change`` lets it patch; the
admin persona (through the Administrators group) can do everything, with a client key as well
as a token; bad input is a 400 that writes nothing; every write leaves an audit event.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from django.db import models
from django.urls import reverse

from hub import permissions
from hub.models import AuditEvent
from tests.factories import UserFactory


class PermissionMatrix:
    basename: ClassVar[str]
    lookup_attr: ClassVar[str] = "pk"
    # Whether a signed-in user without grants may create (it then owns what it made).
    outsider_may_create: ClassVar[bool] = False
    update_field: ClassVar[str]

    # --- what a subclass provides -------------------------------------------------------------
    def make_target(self) -> models.Model:
        raise NotImplementedError

    def create_payload(self) -> dict[str, Any]:
        raise NotImplementedError

    def update_payload(self) -> dict[str, Any]:
        raise NotImplementedError

    def bad_payloads(self) -> list[tuple[dict[str, Any], str]]:
        """``(payload, field expected in the 400 body)`` pairs for create."""
        raise NotImplementedError

    # --- helpers ------------------------------------------------------------------------------
    def list_url(self) -> str:
        return reverse(f"{self.basename}-list")

    def detail_url(self, obj: models.Model) -> str:
        return reverse(f"{self.basename}-detail", args=[getattr(obj, self.lookup_attr)])

    def listed_ids(self, response) -> set[Any]:
        assert response.status_code == 200, response.content
        return {item.get("id") for item in response.json()["results"]}

    @pytest.fixture
    def target(self, db):
        return self.make_target()

    def model(self, target) -> type[models.Model]:
        return type(target)

    # --- the matrix ---------------------------------------------------------------------------
    def test_anonymous_gets_401_everywhere(self, anon, target):
        assert anon.get(self.list_url()).status_code == 401
        assert anon.get(self.detail_url(target)).status_code == 401
        assert anon.post(self.list_url(), self.create_payload(), format="json").status_code == 401
        assert anon.patch(self.detail_url(target), self.update_payload(), format="json").status_code == 401
        assert anon.delete(self.detail_url(target)).status_code == 401

    def test_outsider_sees_empty_list_and_404s_and_changes_nothing(self, outsider, target):
        assert target.pk not in self.listed_ids(outsider.get(self.list_url()))
        assert outsider.get(self.detail_url(target)).status_code == 404
        assert outsider.patch(self.detail_url(target), self.update_payload(), format="json").status_code == 404
        assert outsider.delete(self.detail_url(target)).status_code == 404
        assert self.model(target).objects.filter(pk=target.pk).exists()

    def test_outsider_create_is_refused_unless_owners_may_create(self, outsider, db):
        response = outsider.post(self.list_url(), self.create_payload(), format="json")
        assert response.status_code == (201 if self.outsider_may_create else 403), response.content

    def test_member_granted_view_reads_but_gets_403_on_writes(self, member, member_user, target):
        permissions.grant(permissions.perm_name(type(target), "view"), member_user, target)
        assert target.pk in self.listed_ids(member.get(self.list_url()))
        assert member.get(self.detail_url(target)).status_code == 200
        assert member.patch(self.detail_url(target), self.update_payload(), format="json").status_code == 403
        assert member.delete(self.detail_url(target)).status_code == 403
        assert self.model(target).objects.filter(pk=target.pk).exists()

    def test_member_granted_change_can_patch(self, member, member_user, target):
        for action in ("view", "change"):
            permissions.grant(permissions.perm_name(type(target), action), member_user, target)
        response = member.patch(self.detail_url(target), self.update_payload(), format="json")
        assert response.status_code == 200, response.content
        assert response.json()[self.update_field] == self.update_payload()[self.update_field]

    def test_member_granted_delete_can_delete(self, member, member_user, target):
        for action in ("view", "delete"):
            permissions.grant(permissions.perm_name(type(target), action), member_user, target)
        assert member.delete(self.detail_url(target)).status_code == 204
        assert not self.model(target).objects.filter(pk=target.pk).exists()

    def test_admin_can_create_read_patch_delete_and_each_write_is_audited(self, admin, target):
        created = admin.post(self.list_url(), self.create_payload(), format="json")
        assert created.status_code == 201, created.content
        assert target.pk in self.listed_ids(admin.get(self.list_url()))
        assert admin.get(self.detail_url(target)).status_code == 200
        patched = admin.patch(self.detail_url(target), self.update_payload(), format="json")
        assert patched.status_code == 200, patched.content
        assert admin.delete(self.detail_url(target)).status_code == 204
        label = self.model(target)._meta.label_lower
        actions = list(AuditEvent.objects.filter(model=label).values_list("action", flat=True))
        assert {"create", "update", "delete"} <= set(actions)
        update = AuditEvent.objects.filter(model=label, action="update").first()
        assert update.username == "admin-persona" and update.object_pk == str(target.pk)
        assert self.update_field in update.changes

    def test_admin_client_key_authenticates_as_the_admin(self, admin_key_client, target):
        assert target.pk in self.listed_ids(admin_key_client.get(self.list_url()))
        response = admin_key_client.patch(self.detail_url(target), self.update_payload(), format="json")
        assert response.status_code == 200, response.content
        event = AuditEvent.objects.filter(action="update").first()
        assert event.client_key_name == "matrix"

    def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(self, admin, target):
        model = self.model(target)
        before_count = model.objects.count()
        before_events = AuditEvent.objects.count()
        for payload, field in self.bad_payloads():
            response = admin.post(self.list_url(), payload, format="json")
            assert response.status_code == 400, (payload, response.content)
            assert field in response.json(), (payload, response.json())
        assert model.objects.count() == before_count
        assert AuditEvent.objects.count() == before_events

    def test_patch_with_wrong_types_is_a_400_and_changes_nothing(self, admin, target):
        before = admin.get(self.detail_url(target)).json()
        response = admin.patch(self.detail_url(target), {self.update_field: {"not": "a string"}}, format="json")
        assert response.status_code == 400, response.content
        assert self.update_field in response.json()
        assert admin.get(self.detail_url(target)).json() == before

    def test_malformed_json_is_a_400(self, admin, target):
        response = admin.generic("POST", self.list_url(), "{not json", content_type="application/json")
        assert response.status_code == 400


def third_party_user(**kwargs):
    """A user who is none of the personas (owns the matrix's target objects)."""
    return UserFactory(**kwargs)
