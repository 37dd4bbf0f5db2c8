"""The permission catalogue and /api/my-permissions/."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from hub import permissions
from tests.factories import GroupFactory, SiteFactory

pytestmark = pytest.mark.django_db


def test_permission_catalogue_is_readable_by_any_signed_in_user(member, anon):
    response = member.get(reverse("permission-list"), {"model": "site"})
    assert response.status_code == 200
    codenames = {p["codename"] for p in response.json()["results"]}
    assert codenames == {"add_site", "change_site", "delete_site", "view_site"}
    first = response.json()["results"][0]
    assert set(first) == {"id", "name", "codename", "app_label", "model"}
    assert member.get(reverse("permission-detail", args=[first["id"]])).json()["codename"] == first["codename"]
    assert anon.get(reverse("permission-list")).status_code == 401


def test_permissions_are_read_only(admin):
    pk = Permission.objects.first().pk
    assert admin.post(reverse("permission-list"), {"codename": "x"}, format="json").status_code == 405
    assert admin.delete(reverse("permission-detail", args=[pk])).status_code == 405


def test_my_permissions_has_the_four_sections(member, member_user):
    site = SiteFactory()
    group = GroupFactory(name="site-admins")
    group.user_set.add(member_user)
    group.permissions.add(Permission.objects.get(codename="view_user"))
    member_user.user_permissions.add(Permission.objects.get(codename="view_group"))
    permissions.grant("sites.change_site", member_user, site)
    permissions.grant("sites.view_site", group, site)

    body = member.get(reverse("my-permissions")).json()
    assert isinstance(body, list) and len(body) == 1
    sections = body[0]
    assert [p["codename"] for p in sections["user_permissions"]] == ["view_group"]
    assert [p["codename"] for p in sections["group_permissions"]] == ["view_user"]
    assert [(p["codename"], p["object_pk"]) for p in sections["user_object_permissions"]] == [
        ("change_site", str(site.pk))
    ]
    assert [(p["codename"], p["model"], p["app_label"]) for p in sections["group_object_permissions"]] == [
        ("view_site", "site", "sites")
    ]


def test_restrict_filters_to_granted_objects(member_user):
    visible, hidden = SiteFactory(), SiteFactory()
    permissions.grant("sites.view_site", member_user, visible)
    from sites.models import Site

    assert list(permissions.restrict(Site.objects.all(), member_user)) == [visible]
    assert hidden not in permissions.restrict(Site.objects.all(), member_user)
