"""Site settings: read (list or flat), set, delete by null, refresh, validation, and global pushes."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from hub import permissions
from hub.models import AuditEvent, GlobalSetting
from sites.models import SettingsTask, SiteSetting
from sites.services.sites import DEFAULT_SITE_SETTINGS, create_site
from tests.factories import SiteFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


@pytest.fixture
def site(db):
    return create_site(None, name="lab", shortcode="lab")


def settings_url(site, refresh: bool = False) -> str:
    return reverse("site-settings-refresh" if refresh else "site-settings", args=[site.pk])


def values(*pairs):
    return {"values": [{"key": key, "value": value} for key, value in pairs]}


# --- reading -------------------------------------------------------------------------------------

def test_get_lists_every_setting_with_id_key_value_and_desc(admin, site):
    rows = admin.get(settings_url(site)).json()
    assert [row["key"] for row in rows] == sorted(DEFAULT_SITE_SETTINGS)
    realm = next(row for row in rows if row["key"] == "samba:realm")
    assert set(realm) == {"id", "key", "value", "desc"}
    assert realm["value"] == "" and realm["desc"] == DEFAULT_SITE_SETTINGS["samba:realm"][1]


@pytest.mark.parametrize("flag", ["true", "True", "1"])
def test_flat_returns_a_key_value_dict(admin, site, flag):
    body = admin.get(settings_url(site), {"flat": flag}).json()
    assert body == {key: value for key, (value, _) in DEFAULT_SITE_SETTINGS.items()}


def test_flat_false_is_the_list_and_a_bad_flag_is_a_400(admin, site):
    assert isinstance(admin.get(settings_url(site), {"flat": "false"}).json(), list)
    response = admin.get(settings_url(site), {"flat": "perhaps"})
    assert response.status_code == 400 and "flat" in response.json()


def test_settings_follow_the_sites_visibility(member, member_user, outsider, anon, site):
    assert anon.get(settings_url(site)).status_code == 401
    assert outsider.get(settings_url(site)).status_code == 404
    assert outsider.patch(settings_url(site), values(("samba:realm", "X")), format="json").status_code == 404
    permissions.grant("sites.view_site", member_user, site)
    assert member.get(settings_url(site)).status_code == 200
    assert member.patch(settings_url(site), values(("samba:realm", "X")), format="json").status_code == 403
    assert member.post(settings_url(site, refresh=True)).status_code == 403
    permissions.grant("sites.change_site", member_user, site)
    assert member.patch(settings_url(site), values(("samba:realm", "X")), format="json").status_code == 202
    assert member.post(settings_url(site, refresh=True)).status_code == 202


# --- writing -------------------------------------------------------------------------------------

def test_patch_sets_updates_and_pushes_the_effective_settings(admin, site):
    GlobalSetting.objects.create(key="ngenea:realm", value="GLOBAL.ORG")
    GlobalSetting.objects.create(key="samba:workgroup", value="GLOBALWG")
    response = admin.patch(settings_url(site), values(("samba:realm", "EXAMPLE.ORG"), ("custom:Thing", {"a": [1]})),
                           format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["changes"] == {"samba:realm": ["", "EXAMPLE.ORG"], "custom:Thing": [None, {"a": [1]}]}
    task = SettingsTask.objects.get(pk=body["id"])
    assert body["task_id"] == str(task.task_id) and body["url"].endswith(f"/settingstasks/{task.pk}/")
    assert task.tasktype == SettingsTask.TaskType.APPLY_SETTINGS and task.site == site
    sent = task.request["settings"]
    # Global settings reach the agent, and the site's own override them.
    assert sent["ngenea:realm"] == "GLOBAL.ORG" and sent["samba:workgroup"] == "WORKGROUP"
    assert sent["samba:realm"] == "EXAMPLE.ORG" and sent["custom:Thing"] == {"a": [1]}
    flat = admin.get(settings_url(site), {"flat": "true"}).json()
    assert flat["samba:realm"] == "EXAMPLE.ORG" and flat["custom:Thing"] == {"a": [1]}


def test_null_deletes_a_key_and_the_audit_records_old_and_new(admin, site):
    response = admin.patch(settings_url(site), values(("samba:realm", None), ("no:such", None)), format="json")
    assert response.status_code == 202
    assert response.json()["changes"] == {"samba:realm": ["", None]}
    assert not SiteSetting.objects.filter(site=site, key="samba:realm").exists()
    event = AuditEvent.objects.get(action="action", verb="site_settings")
    assert event.changes == {"samba:realm": ["", None]} and event.object_pk == str(site.pk)


def test_unchanged_values_record_no_change_but_still_push(admin, site):
    response = admin.patch(settings_url(site), values(("samba:workgroup", "WORKGROUP")), format="json")
    assert response.status_code == 202 and response.json()["changes"] == {}
    assert SettingsTask.objects.filter(site=site, tasktype="apply_settings").count() == 1


def test_secret_looking_keys_are_masked_in_the_answer_the_audit_and_the_task_view(admin, site):
    response = admin.patch(settings_url(site), values(("samba:join_password", "hunter2")), format="json")
    assert response.status_code == 202
    assert "hunter2" not in response.content.decode()
    assert "hunter2" not in json.dumps(AuditEvent.objects.get(verb="site_settings").changes)
    task_view = admin.get(response.json()["url"]).content.decode()
    assert "hunter2" not in task_view
    # The agent still receives it.
    assert SettingsTask.objects.get(pk=response.json()["id"]).request["settings"]["samba:join_password"] == "hunter2"


@pytest.mark.parametrize("body, where", [
    ({}, "values"),
    ({"values": []}, "values"),
    ({"values": "samba:realm=x"}, "values"),
    ({"values": {"key": "samba:realm", "value": 1}}, "values"),
    ({"values": [None]}, "values"),
    ({"values": [{"value": 1}]}, "values"),
    ({"values": [{"key": "samba:realm"}]}, "values"),
    ({"values": [{"key": "norealm", "value": 1}]}, "values"),
    ({"values": [{"key": "bad key:x", "value": 1}]}, "values"),
    ({"values": [{"key": ":x", "value": 1}]}, "values"),
    ({"values": [{"key": "a:" + "x" * 300, "value": 1}]}, "values"),
    ({"values": [{"key": "a:b", "value": "nul\u0000"}]}, "values"),
    ({"values": [{"key": "a:b", "value": {"k\u0000": 1}}]}, "values"),
    ({"values": [{"key": "a:b", "value": 1}, {"key": "a:b", "value": 2}]}, "values"),
    ({"values": [{"key": "a:b", "value": 1}, {"key": 5, "value": 2}]}, "values"),
])
def test_invalid_patch_is_a_400_and_writes_nothing(admin, site, body, where):
    before = list(SiteSetting.objects.filter(site=site).values_list("key", "value"))
    response = admin.patch(settings_url(site), body, format="json")
    assert response.status_code == 400, (body, response.content)
    assert where in response.json()
    assert list(SiteSetting.objects.filter(site=site).values_list("key", "value")) == before
    assert not SettingsTask.objects.exists()
    assert not AuditEvent.objects.filter(action="action").exists()


def test_a_valid_key_next_to_an_invalid_one_is_not_written(admin, site):
    response = admin.patch(settings_url(site), {"values": [{"key": "samba:realm", "value": "X"},
                                                           {"key": "bad", "value": 1}]}, format="json")
    assert response.status_code == 400
    assert SiteSetting.objects.get(site=site, key="samba:realm").value == ""


def test_deeply_nested_value_is_refused(admin, site):
    value: list = []
    for _ in range(40):
        value = [value]
    response = admin.patch(settings_url(site), values(("a:b", value)), format="json")
    assert response.status_code == 400


# --- refresh -------------------------------------------------------------------------------------

def test_refresh_recreates_missing_defaults_and_asks_the_agent_to_report(admin, site):
    SiteSetting.objects.filter(site=site, key__in=["samba:realm", "hsm:stub_size"]).delete()
    SiteSetting.objects.filter(site=site, key="samba:workgroup").update(value="CUSTOM")
    response = admin.post(settings_url(site, refresh=True))
    assert response.status_code == 202, response.content
    body = response.json()
    assert sorted(body["created"]) == ["hsm:stub_size", "samba:realm"]
    task = SettingsTask.objects.get(pk=body["id"])
    assert task.tasktype == SettingsTask.TaskType.REPORT_SETTINGS
    # Existing values are kept.
    assert SiteSetting.objects.get(site=site, key="samba:workgroup").value == "CUSTOM"
    assert set(SiteSetting.objects.filter(site=site).values_list("key", flat=True)) == set(DEFAULT_SITE_SETTINGS)
    assert AuditEvent.objects.filter(action="action", verb="settings_refresh").exists()


def test_refresh_of_a_site_made_without_settings_creates_them_all(admin):
    bare = SiteFactory()
    response = admin.post(settings_url(bare, refresh=True))
    assert response.status_code == 202 and sorted(response.json()["created"]) == sorted(DEFAULT_SITE_SETTINGS)


# --- global settings reach every site ------------------------------------------------------------

def test_global_settings_patch_pushes_to_every_site(admin, site):
    other = SiteFactory(name="other")
    response = admin.patch(reverse("settings"), values(("ngenea:realm", "EXAMPLE.ORG")), format="json")
    assert response.status_code == 202
    tasks = response.json()["tasks"]
    assert sorted(task["site"] for task in tasks) == ["lab", "other"]
    for entry in tasks:
        task = SettingsTask.objects.get(task_id=entry["task_id"])
        assert task.tasktype == "apply_settings" and task.site.name == entry["site"]
        assert task.request["settings"]["ngenea:realm"] == "EXAMPLE.ORG"
    assert other.settings_tasks.count() == 1


def test_global_settings_sync_to_one_site(admin, site):
    SiteFactory(name="other")
    response = admin.post(reverse("settings-sync") + "?site=lab")
    assert response.status_code == 202
    assert [task["site"] for task in response.json()["tasks"]] == ["lab"]
    assert SettingsTask.objects.count() == 1
