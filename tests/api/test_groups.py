"""Groups: members, model and object permissions through guardian, NAS gids, built-ins."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from hub import permissions
from hub.models import SyncRequest
from tests.api.matrix import PermissionMatrix
from tests.factories import GroupFactory, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db


class TestGroupPermissions(PermissionMatrix):
    basename = "group"
    update_field = "description"

    def make_target(self):
        return GroupFactory(name="target-group")

    def create_payload(self):
        return {"name": "researchers", "description": "Research staff"}

    def update_payload(self):
        return {"description": "Updated"}

    def bad_payloads(self):
        view_user = Permission.objects.get(codename="view_user")
        return [
            ({}, "name"),
            ({"name": "g" * 151}, "name"),
            ({"name": "long-description", "description": "d" * 501}, "description"),
            ({"name": 42.5, "users": "not-a-list"}, "users"),
            ({"name": "target-group"}, "name"),
            ({"name": "x1", "users": ["ghost"]}, "users"),
            ({"name": "x2", "permissions": [999999]}, "permissions"),
            ({"name": "x3", "permissions": "view"}, "permissions"),
            ({"name": "x4", "nas_group": "yes"}, "nas_group"),
            ({"name": "x5", "object_permissions": [{"model": "nosuch", "object_pk": "1",
                                                    "permission": view_user.pk}]}, "object_permissions"),
            ({"name": "x6", "object_permissions": [{"model": "site", "object_pk": "1",
                                                    "permission": view_user.pk}]}, "object_permissions"),
            ({"name": "x7", "object_permissions": [{"model": "user", "object_pk": "999999",
                                                    "permission": view_user.pk}]}, "object_permissions"),
            ({"name": "x8", "object_permissions": [{"model": "user"}]}, "object_permissions"),
        ]


def test_builtin_groups_exist_with_their_grants():
    admins = Group.objects.get(name="Administrators")
    assert admins.permissions.count() == Permission.objects.count()
    assert Group.objects.filter(name="Users").exists()


def test_object_permissions_are_applied_through_guardian(admin):
    site = SiteFactory()
    view_site = Permission.objects.get(codename="view_site")
    user = UserFactory(username="viewer")
    response = admin.post(reverse("group-list"), {
        "name": "site-viewers", "users": ["viewer"],
        "object_permissions": [{"model": "sites.site", "object_pk": str(site.pk), "permission": view_site.pk}],
    }, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["object_permissions"] == [
        {"model": "site", "object_pk": str(site.pk), "permission": view_site.pk}
    ]
    assert response.json()["users"][0]["username"] == "viewer"
    assert permissions.has_object_perm(user, site, "view")
    other_site = SiteFactory()
    assert not permissions.has_object_perm(user, other_site, "view")

    # PATCH replaces the set.
    group_url = reverse("group-detail", args=[response.json()["id"]])
    assert admin.patch(group_url, {"object_permissions": []}, format="json").status_code == 200
    user = type(user).objects.get(pk=user.pk)  # fresh permission cache
    assert not permissions.has_object_perm(user, site, "view")


def test_model_permissions_grant_on_every_object(admin, member, member_user):
    UserFactory(username="someone")
    view_user = Permission.objects.get(codename="view_user")
    response = admin.post(reverse("group-list"), {"name": "auditors", "users": [member_user.username],
                                                  "permissions": [view_user.pk]}, format="json")
    assert response.status_code == 201
    names = {u["username"] for u in member.get(reverse("user-list")).json()["results"]}
    assert "someone" in names


def test_nas_group_gets_a_gid_that_is_never_reused(admin):
    first = admin.post(reverse("group-list"), {"name": "a", "nas_group": True}, format="json").json()
    assert first["nas_group"] == {"gid": 100000}
    assert admin.delete(reverse("group-detail", args=[first["id"]])).status_code == 204
    second = admin.post(reverse("group-list"), {"name": "b", "nas_group": True}, format="json").json()
    assert second["nas_group"] == {"gid": 100001}
    plain = admin.post(reverse("group-list"), {"name": "c"}, format="json").json()
    assert plain["nas_group"] is None


def test_builtin_groups_cannot_be_deleted_or_renamed(admin):
    admins = Group.objects.get(name="Administrators")
    url = reverse("group-detail", args=[admins.pk])
    assert admin.delete(url).status_code == 400
    assert admin.patch(url, {"name": "Admins"}, format="json").status_code == 400
    assert admin.patch(url, {"permissions": []}, format="json").status_code == 400
    assert Group.objects.get(pk=admins.pk).permissions.count() == Permission.objects.count()


def test_primary_group_of_nas_users_cannot_be_deleted(admin):
    group = admin.post(reverse("group-list"), {"name": "eng", "nas_group": True}, format="json").json()
    admin.post(reverse("user-list"), {"username": "n1", "password": "Sturdy-Pass-1234",
                                      "nas_user": {"primary_group": "eng"}}, format="json")
    url = reverse("group-detail", args=[group["id"]])
    assert admin.delete(url).status_code == 400
    assert admin.patch(url, {"nas_group": False}, format="json").status_code == 400
    assert Group.objects.filter(pk=group["id"]).exists()


def test_members_see_their_own_groups(member, member_user):
    mine = GroupFactory(name="mine")
    mine.user_set.add(member_user)
    GroupFactory(name="not-mine")
    names = {g["name"] for g in member.get(reverse("group-list")).json()["results"]}
    assert names == {"mine"}
    assert member.patch(reverse("group-detail", args=[mine.pk]), {"description": "x"},
                        format="json").status_code == 403


def test_sync_is_admin_only_and_recorded(admin, member):
    assert admin.post(reverse("group-sync")).status_code == 202
    assert SyncRequest.objects.filter(kind="groups").count() == 1
    assert member.post(reverse("group-sync")).status_code == 403
