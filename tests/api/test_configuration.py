"""Configurations, global settings and feature flags: everyone reads, administrators write."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hub.configuration import CONFIGURATION_KEYS
from hub.models import AuditEvent, GlobalSetting
from tests.factories import SiteFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

REFERENCE_KEYS = {
    "analytics_timeout", "custom_statistics_tasks", "default_space_location", "force_local_managed_users",
    "health_timeout", "initial_gid", "initial_uid", "jobs_ttl", "maximum_external_results",
    "node_health_last_heartbeat_interval", "salt_task_timeout", "schedules_enabled", "search_backend",
    "search_max_results", "search_result_ttl", "snapdiff_stream_timeout", "snapshot_create_delete_retry_timeout",
    "stat_refresh_period", "stat_timeout", "task_invalidation_timeout",
}


def test_configurations_have_every_reference_key_with_product_defaults(member):
    body = member.get(reverse("configurations")).json()
    assert set(body) == REFERENCE_KEYS
    assert body["jobs_ttl"] == 90 and body["node_health_last_heartbeat_interval"] == 120
    assert body["initial_uid"] == 100000 and body["initial_gid"] == 100000
    assert body["search_max_results"] == 200 and body["search_result_ttl"] == 7
    assert body["task_invalidation_timeout"] == 360 and body["snapshot_create_delete_retry_timeout"] == 1000
    assert body["schedules_enabled"] is True and body["force_local_managed_users"] is False
    assert body["custom_statistics_tasks"] == []


def test_admin_patches_configuration_and_it_is_audited(admin):
    response = admin.patch(reverse("configurations"), {"jobs_ttl": 30, "schedules_enabled": False}, format="json")
    assert response.status_code == 200
    assert response.json()["jobs_ttl"] == 30 and response.json()["schedules_enabled"] is False
    assert admin.get(reverse("configurations")).json()["jobs_ttl"] == 30
    event = AuditEvent.objects.get(model="hub.configurationvalue")
    assert event.changes == {"jobs_ttl": [90, 30], "schedules_enabled": [True, False]}


@pytest.mark.parametrize("payload", [
    {"jobs_ttl": "soon"}, {"jobs_ttl": 0}, {"jobs_ttl": 10**12}, {"initial_uid": 10},
    {"schedules_enabled": "perhaps"}, {"search_backend": "grep"}, {"default_space_location": "relative/path"},
    {"default_space_location": "/a/../b"}, {"custom_statistics_tasks": "not-a-list"},
    {"custom_statistics_tasks": ["bad name!"]}, {"no_such_key": 1}, {"salt_task_timeout": -1},
])
def test_bad_configuration_is_400_and_changes_nothing(admin, payload):
    before = admin.get(reverse("configurations")).json()
    response = admin.patch(reverse("configurations"), {**payload, "jobs_ttl": payload.get("jobs_ttl", 45)},
                           format="json")
    assert response.status_code == 400, response.content
    assert set(payload) <= set(response.json())
    assert admin.get(reverse("configurations")).json() == before


def test_non_admin_cannot_change_configuration(member, anon):
    assert member.patch(reverse("configurations"), {"jobs_ttl": 5}, format="json").status_code == 403
    assert anon.get(reverse("configurations")).status_code == 401


def test_global_settings_set_update_and_delete_with_null(admin):
    url = reverse("settings")
    response = admin.patch(url, {"values": [{"key": "ngenea:realm", "value": "EXAMPLE.ORG"},
                                            {"key": "ngeneahsm_targets:devaws:Storage", "value": {"a": 1}}]},
                           format="json")
    assert response.status_code == 202
    assert response.json()["tasks"] == []
    assert {s["key"] for s in admin.get(url).json()} == {"ngenea:realm", "ngeneahsm_targets:devaws:Storage"}
    admin.patch(url, {"values": [{"key": "ngenea:realm", "value": "OTHER"}]}, format="json")
    assert GlobalSetting.objects.get(key="ngenea:realm").value == "OTHER"
    response = admin.patch(url, {"values": [{"key": "ngenea:realm", "value": None}]}, format="json")
    assert response.status_code == 202
    assert not GlobalSetting.objects.filter(key="ngenea:realm").exists()
    event = AuditEvent.objects.filter(model="hub.globalsetting").first()
    assert event.changes == {"ngenea:realm": ["OTHER", None]}


@pytest.mark.parametrize("payload", [
    {}, {"values": []}, {"values": "x"}, {"values": [{"value": 1}]}, {"values": [{"key": "nosection", "value": 1}]},
    {"values": [{"key": "a:b"}]}, {"values": [{"key": "a:b", "value": 1}, {"key": "a:b", "value": 2}]},
    {"values": [{"key": "a:b", "value": "nul\u0000"}]}, {"values": [{"key": "a:" + "b" * 300, "value": 1}]},
])
def test_bad_global_settings_are_400_and_write_nothing(admin, payload):
    admin.patch(reverse("settings"), {"values": [{"key": "keep:me", "value": 1}]}, format="json")
    response = admin.patch(reverse("settings"), payload, format="json")
    assert response.status_code == 400, response.content
    assert list(GlobalSetting.objects.values_list("key", "value")) == [("keep:me", 1)]


def test_deeply_nested_setting_value_is_refused(admin):
    value: object = 1
    for _ in range(50):
        value = [value]
    response = admin.patch(reverse("settings"), {"values": [{"key": "a:b", "value": value}]}, format="json")
    assert response.status_code == 400


def test_settings_sync_checks_the_site_and_answers_202(admin, member):
    site = SiteFactory(name="london")
    assert admin.post(reverse("settings-sync")).status_code == 202
    assert admin.post(reverse("settings-sync") + "?site=london").status_code == 202
    missing = admin.post(reverse("settings-sync") + "?site=nowhere")
    assert missing.status_code == 400 and "site" in missing.json()
    assert member.post(reverse("settings-sync")).status_code == 403
    assert member.patch(reverse("settings"), {"values": [{"key": "a:b", "value": 1}]},
                        format="json").status_code == 403
    assert site.pk


def test_features_are_listed_and_only_admins_toggle_them(admin, member):
    listed = member.get(reverse("feature-list")).json()
    names = {f["name"] for f in listed["results"]}
    assert {"client_keys", "self_service_profile"} <= names
    url = reverse("feature-detail", args=["self_service_profile"])
    assert member.patch(url, {"enabled": False}, format="json").status_code == 403
    response = admin.patch(url, {"enabled": False, "name": "renamed", "description": "x"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "self_service_profile" and response.json()["enabled"] is False
    assert admin.patch(url, {"enabled": "sometimes"}, format="json").status_code == 400
    assert admin.get(reverse("feature-detail", args=["nope"])).status_code == 404
    assert admin.post(reverse("feature-list"), {"name": "x"}, format="json").status_code == 405


def test_self_service_flag_off_stops_users_editing_themselves(admin, member, member_user):
    admin.patch(reverse("feature-detail", args=["self_service_profile"]), {"enabled": False}, format="json")
    response = member.patch(reverse("user-detail", args=[member_user.username]), {"first_name": "X"}, format="json")
    assert response.status_code == 403


def test_every_configuration_key_has_a_default_within_its_range():
    for key in CONFIGURATION_KEYS:
        if key.minimum is not None:
            assert key.minimum <= key.default <= key.maximum, key.name
