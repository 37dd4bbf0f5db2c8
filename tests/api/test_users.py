"""Users: CRUD by username, NAS uids, profiles, activation, passwords, sync."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from hub.models import AuditEvent, ConfigurationValue, IdSequence, NasUser, SyncRequest
from tests.api.matrix import PermissionMatrix, third_party_user
from tests.factories import PASSWORD, GroupFactory, SiteFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]
User = get_user_model()


@pytest.fixture
def nas_group(admin):
    response = admin.post(reverse("group-list"), {"name": "eng", "nas_group": True}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


class TestUserPermissions(PermissionMatrix):
    basename = "user"
    lookup_attr = "username"
    update_field = "first_name"

    def make_target(self):
        return third_party_user(username="target-user")

    def create_payload(self):
        return {"username": "newcomer", "password": "Sturdy-Pass-1234", "email": "new@example.org"}

    def update_payload(self):
        return {"first_name": "Ada"}

    def bad_payloads(self):
        return [
            ({"password": "Sturdy-Pass-1234"}, "username"),
            ({"username": "nopass"}, "password"),
            ({"username": "bad name!", "password": "Sturdy-Pass-1234"}, "username"),
            ({"username": "u" * 151, "password": "Sturdy-Pass-1234"}, "username"),
            ({"username": "weak", "password": "123"}, "password"),
            ({"username": "x1", "password": "Sturdy-Pass-1234", "email": "not-an-email"}, "email"),
            ({"username": "x2", "password": "Sturdy-Pass-1234", "groups": ["no-such-group"]}, "groups"),
            ({"username": "x3", "password": "Sturdy-Pass-1234", "profile": {"timezone": "Mars/Base"}}, "profile"),
            ({"username": "x4", "password": "Sturdy-Pass-1234", "profile": {"home_site": 999999}}, "profile"),
            ({"username": "x5", "password": "Sturdy-Pass-1234", "nas_user": {"allow_ssh": True}}, "nas_user"),
            ({"username": "x6", "password": "Sturdy-Pass-1234", "nas_user": {"primary_group": "Users"}},
             "nas_user"),
            ({"username": "x8", "password": "Sturdy-Pass-1234", "first_name": "f" * 151}, "first_name"),
            ({"username": "x9", "password": "Sturdy-Pass-1234", "profile": {"phone": "9" * 51}}, "profile"),
            ({"username": "x10", "password": "Sturdy-Pass-1234", "profile": "flat"}, "profile"),
            ({"username": "x7", "password": "Sturdy-Pass-1234", "first_name": "nul\x00byte"}, "first_name"),
            ({"username": "target-user", "password": "Sturdy-Pass-1234"}, "username"),
        ]


def test_created_user_has_nas_uid_profile_and_default_group(admin, nas_group):
    site = SiteFactory()
    response = admin.post(reverse("user-list"), {
        "username": "ada", "password": "Analytical-Engine-1843", "email": "ada@example.org",
        "nas_user": {"primary_group": "eng", "allow_ssh": True},
        "profile": {"timezone": "Europe/London", "home_site": site.pk, "department": "Maths"},
    }, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert "password" not in body
    assert body["nas_user"] == {"uid": 100000, "primary_group": "eng", "allow_ssh": True}
    assert body["profile"]["timezone"] == "Europe/London" and body["profile"]["home_site"] == site.pk
    assert [g["name"] for g in body["groups"]] == ["Users"]
    assert User.objects.get(username="ada").check_password("Analytical-Engine-1843")


def test_uids_start_at_initial_uid_and_are_never_reused(admin, nas_group):
    ConfigurationValue.objects.create(key="initial_uid", value=200000)
    uids = []
    for name in ("u1", "u2"):
        body = admin.post(reverse("user-list"), {"username": name, "password": "Sturdy-Pass-1234",
                                                 "nas_user": {"primary_group": "eng"}}, format="json").json()
        uids.append(body["nas_user"]["uid"])
    assert uids == [200000, 200001]
    assert admin.delete(reverse("user-detail", args=["u2"])).status_code == 204
    body = admin.post(reverse("user-list"), {"username": "u3", "password": "Sturdy-Pass-1234",
                                             "nas_user": {"primary_group": "eng"}}, format="json").json()
    assert body["nas_user"]["uid"] == 200002


def test_uid_cannot_be_changed(admin, nas_group):
    admin.post(reverse("user-list"), {"username": "u1", "password": "Sturdy-Pass-1234",
                                      "nas_user": {"primary_group": "eng"}}, format="json")
    response = admin.patch(reverse("user-detail", args=["u1"]), {"nas_user": {"uid": 5}}, format="json")
    assert response.status_code == 200
    assert NasUser.objects.get(user__username="u1").uid == 100000


def test_usernames_with_dots_and_at_signs_are_addressable(admin):
    UserFactory(username="first.last@corp")
    response = admin.get(reverse("user-detail", args=["first.last@corp"]))
    assert response.status_code == 200 and response.json()["username"] == "first.last@corp"


def test_password_is_write_only_and_patch_rehashes_it(admin):
    user = UserFactory(username="pw")
    response = admin.patch(reverse("user-detail", args=["pw"]), {"password": "Brand-New-Secret-9"}, format="json")
    assert response.status_code == 200 and "password" not in response.json()
    user.refresh_from_db()
    assert user.check_password("Brand-New-Secret-9")
    event = AuditEvent.objects.get(action="update", object_pk=str(user.pk))
    assert "Brand-New-Secret-9" not in str(event.changes)


def test_activate_and_deactivate(admin, admin_user):
    user = UserFactory(username="sleepy")
    assert admin.post(reverse("user-deactivate", args=["sleepy"])).json()["is_active"] is False
    user.refresh_from_db()
    assert not user.is_active
    assert admin.post(reverse("user-activate", args=["sleepy"])).json()["is_active"] is True
    assert AuditEvent.objects.filter(action="action", verb="deactivate", object_pk="sleepy").exists()
    response = admin.post(reverse("user-deactivate", args=[admin_user.username]))
    assert response.status_code == 400
    admin_user.refresh_from_db()
    assert admin_user.is_active


def test_member_cannot_activate_others(member):
    UserFactory(username="other")
    assert member.post(reverse("user-deactivate", args=["other"])).status_code == 404


def test_admin_cannot_delete_themselves(admin, admin_user):
    assert admin.delete(reverse("user-detail", args=[admin_user.username])).status_code == 400
    assert User.objects.filter(pk=admin_user.pk).exists()


def test_change_password_checks_the_old_one_and_validators(member, member_user):
    url = reverse("user-change-password")
    wrong = member.post(url, {"old_password": "nope", "new_password": "Another-Good-One-7"}, format="json")
    assert wrong.status_code == 400 and "old_password" in wrong.json()
    weak = member.post(url, {"old_password": PASSWORD, "new_password": "password"}, format="json")
    assert weak.status_code == 400 and "new_password" in weak.json()
    missing = member.post(url, {}, format="json")
    assert missing.status_code == 400 and {"old_password", "new_password"} <= set(missing.json())
    member_user.refresh_from_db()
    assert member_user.check_password(PASSWORD)
    ok = member.post(url, {"old_password": PASSWORD, "new_password": "Another-Good-One-7"}, format="json")
    assert ok.status_code == 200
    member_user.refresh_from_db()
    assert member_user.check_password("Another-Good-One-7")


def test_user_sees_and_edits_own_profile_but_not_own_groups(member, member_user):
    me = reverse("user-detail", args=[member_user.username])
    listed = member.get(reverse("user-list")).json()["results"]
    assert [u["username"] for u in listed] == [member_user.username]
    ok = member.patch(me, {"first_name": "Grace", "profile": {"phone": "+44 1234"}}, format="json")
    assert ok.status_code == 200 and ok.json()["profile"]["phone"] == "+44 1234"
    escalate = member.patch(me, {"groups": ["Administrators"]}, format="json")
    assert escalate.status_code == 403
    assert not member_user.groups.filter(name="Administrators").exists()
    takeover = member.patch(me, {"password": "Taken-Over-Pass-99"}, format="json")
    assert takeover.status_code == 403
    member_user.refresh_from_db()
    assert member_user.check_password(PASSWORD)


def test_sync_records_a_request_and_answers_202(admin, member):
    response = admin.post(reverse("user-sync"))
    assert response.status_code == 202
    assert response.json()["state"] == "pending" and response.json()["tasks"] == []
    assert SyncRequest.objects.filter(kind="users").count() == 1
    assert member.post(reverse("user-sync")).status_code == 403


def test_groups_can_be_set_by_admin(admin):
    group = GroupFactory(name="ops")
    UserFactory(username="g1")
    response = admin.patch(reverse("user-detail", args=["g1"]), {"groups": ["ops", "Users"]}, format="json")
    assert response.status_code == 200
    assert sorted(g["name"] for g in response.json()["groups"]) == ["Users", "ops"]
    assert group.user_set.filter(username="g1").exists()


def test_uid_sequence_survives_configuration_lowering(admin, nas_group):
    ConfigurationValue.objects.create(key="initial_uid", value=300000)
    admin.post(reverse("user-list"), {"username": "a", "password": "Sturdy-Pass-1234",
                                      "nas_user": {"primary_group": "eng"}}, format="json")
    ConfigurationValue.objects.filter(key="initial_uid").update(value=100000)
    body = admin.post(reverse("user-list"), {"username": "b", "password": "Sturdy-Pass-1234",
                                             "nas_user": {"primary_group": "eng"}}, format="json").json()
    assert body["nas_user"]["uid"] == 300001
    assert IdSequence.objects.get(name="uid").next_value == 300002
