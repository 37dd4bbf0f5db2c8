"""Sites: the permission matrix, every field rule, the rename and delete rules, refresh, visibility."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hub import permissions
from hub.models import AuditEvent
from sites.models import DEFAULT_QUEUE, Queue, SettingsTask, Site, SiteSetting
from sites.services.sites import DEFAULT_SITE_SETTINGS
from tests.api.matrix import PermissionMatrix
from tests.factories import ExternalTargetFactory, GroupFactory, NodeFactory, SiteFactory, SpaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

REFERENCE_FIELDS = {
    "am_i_configured", "bandwidth", "color", "directories_count", "editable", "elasticsearch_url",
    "enable_auto_file_batch_sizing", "exclude", "file_batch_gb", "file_batch_size", "files_count",
    "files_hydrated_count", "files_stubbed_count", "gpfs_iscan_buckets", "gpfs_iscan_threads", "id", "include",
    "label", "lock_threshold", "name", "pixstor_search_url", "public_url", "ready_to_configure", "shortcode",
    "spaces", "timezone", "type", "url",
}


def site_url(site: Site, verb: str | None = None) -> str:
    return reverse(f"site-{verb}" if verb else "site-detail", args=[site.pk])


def online(**kwargs):
    return NodeFactory(last_heartbeat=timezone.now() - timedelta(seconds=5), **kwargs)


def offline(**kwargs):
    return NodeFactory(last_heartbeat=timezone.now() - timedelta(hours=2), **kwargs)


class TestSitePermissions(PermissionMatrix):
    basename = "site"
    update_field = "label"

    def make_target(self):
        return SiteFactory()

    def create_payload(self):
        return {"name": "newsite", "shortcode": "ns"}

    def update_payload(self):
        return {"label": "Renamed lab"}

    def bad_payloads(self):
        ok = {"name": "okname", "shortcode": "ok"}
        return [
            ({}, "name"),
            ({"shortcode": "x"}, "name"),
            ({"name": "x"}, "shortcode"),
            ({**ok, "name": "has space"}, "name"),
            ({**ok, "name": "dot.ted"}, "name"),
            ({**ok, "name": "x" * 101}, "name"),
            ({**ok, "shortcode": "a/b"}, "shortcode"),
            ({**ok, "timezone": "Mars/Olympus"}, "timezone"),
            ({**ok, "color": [1, 2]}, "color"),
            ({**ok, "include": {"a": 1}}, "include"),
            ({**ok, "file_batch_size": -1}, "file_batch_size"),
        ]


# --- creation ------------------------------------------------------------------------------------

def test_create_makes_the_default_queue_and_default_settings(admin):
    response = admin.post(reverse("site-list"), {"name": "lab", "shortcode": "lab"}, format="json")
    assert response.status_code == 201, response.content
    site = Site.objects.get(name="lab")
    assert list(site.queues.values_list("name", flat=True)) == [DEFAULT_QUEUE]
    assert set(site.settings.values_list("key", flat=True)) == set(DEFAULT_SITE_SETTINGS)


def test_a_site_shows_every_reference_field_and_our_extras(admin):
    response = admin.post(reverse("site-list"), {"name": "lab", "shortcode": "lab"}, format="json")
    body = response.json()
    assert REFERENCE_FIELDS <= set(body)
    assert {"filesystem_type", "description", "inventory_updated"} <= set(body)
    assert body["timezone"] == "UTC" and body["color"] == [] and body["include"] == [] and body["spaces"] == []
    assert body["editable"] is True
    assert body["url"].endswith(site_url(Site.objects.get(name="lab")))


def test_every_writable_field_round_trips(admin):
    payload = {
        "name": "full", "shortcode": "fl", "label": "Full site", "description": "Main lab cluster",
        "type": "aws", "filesystem_type": "gpfs", "timezone": "Europe/London", "color": [10, 20, 30, 255],
        "public_url": "https://lab.example.org", "pixstor_search_url": "https://search.example.org/api",
        "elasticsearch_url": "http://es.example.org:9200", "am_i_configured": True, "ready_to_configure": True,
        "include": ["/mmfs1/projects/**"], "exclude": ["*.tmp", "*~"], "file_batch_size": 500,
        "file_batch_gb": 20, "enable_auto_file_batch_sizing": True, "gpfs_iscan_buckets": 8,
        "gpfs_iscan_threads": 16, "lock_threshold": 3, "bandwidth": 10000,
    }
    response = admin.post(reverse("site-list"), payload, format="json")
    assert response.status_code == 201, response.content
    body = admin.get(response.json()["url"]).json()
    assert {key: body[key] for key in payload} == payload


def test_counts_are_read_only(admin):
    counts = {"files_count": 5, "directories_count": 6, "files_hydrated_count": 7, "files_stubbed_count": 8}
    created = admin.post(reverse("site-list"), {"name": "lab", "shortcode": "lab", **counts}, format="json")
    assert created.status_code == 201
    assert all(created.json()[key] == 0 for key in counts)
    site = Site.objects.get(name="lab")
    Site.objects.filter(pk=site.pk).update(files_count=42)
    patched = admin.patch(site_url(site), {"files_count": 1}, format="json")
    assert patched.status_code == 200 and patched.json()["files_count"] == 42


# --- every field rule ----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("name", ""), ("name", "has space"), ("name", "semi;colon"), ("name", "é"), ("name", "x" * 101),
    ("name", "nul\u0000"), ("name", 12.5), ("name", None),
    ("shortcode", ""), ("shortcode", "a b"), ("shortcode", "x" * 21),
    ("timezone", "Mars/Olympus"), ("timezone", "GMT+5"), ("timezone", ""), ("timezone", 3),
    ("color", [1, 2]), ("color", [1, 2, 3, 4, 5]), ("color", [256, 0, 0]), ("color", [-1, 0, 0]),
    ("color", ["1", "2", "3"]), ("color", [1.5, 2, 3]), ("color", [True, 0, 0]), ("color", "red"),
    ("color", {"r": 1}),
    ("include", "*.tmp"), ("include", {"glob": "*.tmp"}), ("include", [""]), ("include", [3]),
    ("include", ["nul\u0000"]), ("include", ["x" * 1025]), ("include", ["*"] * 501), ("include", [None]),
    ("exclude", "*.tmp"), ("exclude", [""]), ("exclude", [["nested"]]),
    ("file_batch_size", -1), ("file_batch_size", 0), ("file_batch_size", 100_001), ("file_batch_size", "many"),
    ("file_batch_gb", -5), ("file_batch_gb", 0), ("file_batch_gb", 10_001),
    ("gpfs_iscan_buckets", 0), ("gpfs_iscan_buckets", 1025), ("gpfs_iscan_threads", 0), ("gpfs_iscan_threads", 257),
    ("lock_threshold", -1), ("lock_threshold", 2**40), ("bandwidth", -1), ("bandwidth", 2**80),
    ("type", "mainframe"), ("filesystem_type", "ntfs"),
    ("public_url", "not a url"), ("pixstor_search_url", "ftp//x"), ("elasticsearch_url", "es:9200"),
    ("label", "x" * 201), ("description", "x" * 501), ("am_i_configured", "maybe"),
])
def test_bad_field_value_is_a_400_naming_the_field_and_creates_nothing(admin, field, value):
    before_events = AuditEvent.objects.count()
    response = admin.post(reverse("site-list"), {"name": "lab", "shortcode": "lab", field: value}, format="json")
    assert response.status_code == 400, (field, value, response.content)
    assert field in response.json(), response.json()
    assert not Site.objects.exists() and not Queue.objects.exists() and not SiteSetting.objects.exists()
    assert AuditEvent.objects.count() == before_events


@pytest.mark.parametrize("field, value", [
    ("name", "under_score-and-dash9"), ("timezone", "America/Argentina/Buenos_Aires"), ("color", []),
    ("color", [0, 0, 0]), ("color", [255, 255, 255, 0]), ("include", []), ("exclude", ["**/.snapshots/**"]),
    ("bandwidth", None), ("lock_threshold", 0), ("public_url", ""),
])
def test_edge_values_that_are_valid_are_accepted(admin, field, value):
    payload = {"name": "lab", "shortcode": "lab", field: value}
    response = admin.post(reverse("site-list"), payload, format="json")
    assert response.status_code == 201, response.content
    assert response.json()[field] == value


@pytest.mark.parametrize("field", ["name", "shortcode"])
def test_name_and_shortcode_are_unique_ignoring_case(admin, field):
    SiteFactory(name="lab", shortcode="lab")
    payload = {"name": "other", "shortcode": "oth", field: "LAB"}
    response = admin.post(reverse("site-list"), payload, format="json")
    assert response.status_code == 400
    assert "already exists" in response.json()[field][0]
    assert Site.objects.count() == 1


def test_patching_a_site_to_another_sites_name_is_a_400(admin):
    SiteFactory(name="lab", shortcode="lab")
    other = SiteFactory(name="other", shortcode="oth")
    response = admin.patch(site_url(other), {"name": "lab"}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    # Its own name again is not a clash.
    assert admin.patch(site_url(other), {"name": "other", "shortcode": "oth"}, format="json").status_code == 200


def test_hostile_bodies_never_cause_a_500(admin):
    site = SiteFactory()
    bodies = ["[]", "null", '"x"', "0", json.dumps({"name": {"$gt": ""}, "color": {"a": [1]}}),
              json.dumps({"include": [{"a": 1}], "exclude": [[[]]]}), json.dumps({"bandwidth": 2**80})]
    for body in bodies:
        for method, url in (("POST", reverse("site-list")), ("PATCH", site_url(site))):
            response = admin.generic(method, url, body, content_type="application/json")
            assert response.status_code == 400, (method, body, response.content)
    assert Site.objects.count() == 1


# --- renaming ------------------------------------------------------------------------------------

def test_a_site_without_nodes_can_be_renamed(admin):
    site = SiteFactory(name="lab")
    response = admin.patch(site_url(site), {"name": "lab2"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "lab2"


def test_a_site_with_agent_nodes_cannot_be_renamed(admin):
    site = SiteFactory(name="lab")
    offline(site=site)
    response = admin.patch(site_url(site), {"name": "lab2", "label": "New label"}, format="json")
    assert response.status_code == 400
    assert "cannot be renamed while it has agent nodes" in response.json()["name"][0]
    site.refresh_from_db()
    assert site.name == "lab" and site.label == ""
    # Other fields still change, and sending the same name is not a rename.
    response = admin.patch(site_url(site), {"name": "lab", "label": "New label"}, format="json")
    assert response.status_code == 200 and response.json()["label"] == "New label"


# --- deletion ------------------------------------------------------------------------------------

def test_delete_is_refused_while_a_node_is_online(admin):
    site = SiteFactory()
    online(site=site)
    response = admin.delete(site_url(site))
    assert response.status_code == 409
    assert "heartbeats" in response.json()["detail"]
    assert Site.objects.filter(pk=site.pk).exists()


def test_delete_is_refused_while_spaces_are_placed_on_the_site(admin):
    site = SiteFactory()
    SpaceFactory(name="projects", sites=[site])
    response = admin.delete(site_url(site))
    assert response.status_code == 409
    assert "projects" in response.json()["detail"]
    assert Site.objects.filter(pk=site.pk).exists()


def test_delete_is_refused_while_an_external_target_is_configured_on_the_site(admin):
    site = SiteFactory()
    target = ExternalTargetFactory(name="archive")
    target.configured_on_sites.add(site)
    response = admin.delete(site_url(site))
    assert response.status_code == 409 and "archive" in response.json()["detail"]


def test_delete_of_a_site_whose_nodes_went_silent_removes_them_and_its_grants(admin, member_user):
    site = SiteFactory()
    node = offline(site=site)
    permissions.grant("sites.view_site", member_user, site)
    assert admin.delete(site_url(site)).status_code == 204
    assert not Site.objects.filter(pk=site.pk).exists()
    assert not type(node).objects.filter(pk=node.pk).exists()
    from guardian.models import UserObjectPermission

    assert not UserObjectPermission.objects.filter(object_pk=str(site.pk)).exists()


# --- representation ------------------------------------------------------------------------------

def test_spaces_are_listed_with_id_name_and_url(admin):
    site = SiteFactory()
    beta, alpha = SpaceFactory(name="beta", sites=[site]), SpaceFactory(name="alpha", sites=[site])
    SpaceFactory(name="elsewhere")
    spaces = admin.get(site_url(site)).json()["spaces"]
    assert [(s["id"], s["name"]) for s in spaces] == [(alpha.pk, "alpha"), (beta.pk, "beta")]
    assert spaces[0]["url"].endswith(reverse("space-detail", args=[alpha.pk]))


def test_spaces_are_not_written_through_the_site(admin):
    site = SiteFactory()
    space = SpaceFactory()
    response = admin.patch(site_url(site), {"spaces": [space.pk]}, format="json")
    assert response.status_code == 200 and response.json()["spaces"] == []


def test_editable_says_whether_the_caller_may_change_the_site(member, member_user):
    viewed, changed = SiteFactory(), SiteFactory()
    permissions.grant("sites.view_site", member_user, viewed)
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_site", member_user, changed)
    rows = {row["id"]: row["editable"] for row in member.get(reverse("site-list")).json()["results"]}
    assert rows == {viewed.pk: False, changed.pk: True}


def test_filter_by_name_and_shortcode(admin):
    SiteFactory(name="other", shortcode="oth")
    SiteFactory(name="lab", shortcode="lb")
    assert [s["name"] for s in admin.get(reverse("site-list"), {"name": "lab"}).json()["results"]] == ["lab"]
    assert [s["name"] for s in admin.get(reverse("site-list"), {"shortcode": "oth"}).json()["results"]] == ["other"]


def test_a_group_granted_view_on_a_site_sees_it_and_not_another(member, member_user):
    group = GroupFactory()
    member_user.groups.add(group)
    mine, theirs = SiteFactory(), SiteFactory()
    permissions.grant("sites.view_site", group, mine)
    listed = {row["id"] for row in member.get(reverse("site-list")).json()["results"]}
    assert listed == {mine.pk}
    assert member.get(site_url(theirs)).status_code == 404


def test_listing_costs_the_same_number_of_queries_for_few_and_many_sites(member, member_user):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert member.get(reverse("site-list"), {"page_size": 100}).status_code == 200
        return len(captured)

    def add_sites(count: int) -> None:
        for _ in range(count):
            site = SiteFactory()
            permissions.grant("sites.view_site", member_user, site)
            SpaceFactory(sites=[site])

    add_sites(2)
    few = queries()
    add_sites(20)
    assert queries() == few


def test_page_size_zero_streams_every_site(admin):
    for _ in range(25):
        SiteFactory()
    response = admin.get(reverse("site-list"), {"page_size": 0})
    body = json.loads(b"".join(response.streaming_content))
    assert body["count"] == 25 and len(body["results"]) == 25 and "spaces" in body["results"][0]


# --- refresh -------------------------------------------------------------------------------------

def test_refresh_records_an_inventory_task_and_answers_202_with_where_to_follow_it(admin):
    site = SiteFactory()
    response = admin.post(site_url(site, "refresh"))
    assert response.status_code == 202, response.content
    body = response.json()
    task = SettingsTask.objects.get(pk=body["id"])
    assert task.site == site and task.tasktype == SettingsTask.TaskType.INVENTORY
    assert task.state == SettingsTask.State.PENDING and body["task_id"] == str(task.task_id)
    assert body["url"].endswith(reverse("settingstask-detail", args=[task.pk]))
    assert admin.get(body["url"]).json()["tasktype"] == "inventory"
    event = AuditEvent.objects.get(action="action", verb="refresh")
    assert event.object_pk == str(site.pk)


def test_refresh_needs_change_on_the_site(member, member_user, outsider):
    site = SiteFactory()
    assert outsider.post(site_url(site, "refresh")).status_code == 404
    permissions.grant("sites.view_site", member_user, site)
    assert member.post(site_url(site, "refresh")).status_code == 403
    permissions.grant("sites.change_site", member_user, site)
    assert member.post(site_url(site, "refresh")).status_code == 202
    assert SettingsTask.objects.count() == 1


def test_refresh_order_is_published_to_the_sites_queue_only_after_the_commit(
    admin, django_capture_on_commit_callbacks
):
    site = SiteFactory(name="lab")
    with mock.patch("hub.celery.app.send_task") as send_task:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = admin.post(site_url(site, "refresh"))
        assert response.status_code == 202
        send_task.assert_not_called()
        for callback in callbacks:
            callback()
    send_task.assert_called_once()
    args, kwargs = send_task.call_args
    assert args[0] == "agent.inventory"
    assert kwargs["queue"] == "lab" and kwargs["task_id"] == response.json()["task_id"]
    assert kwargs["kwargs"] == {"order": {"site": "lab"}}


def test_refresh_order_reaches_the_filesystem_broker(admin, django_capture_on_commit_callbacks):
    """With the default filesystem broker the order is a message file in BROKER_DIR/queue."""
    site = SiteFactory(name="lab-broker-probe")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(site_url(site, "refresh"))
    task_id = response.json()["task_id"]
    task = SettingsTask.objects.get(task_id=task_id)
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        # Another broker: publishing succeeded if the task was not marked failed.
        assert task.state == SettingsTask.State.PENDING
        return
    queue_dir = Path(settings.BROKER_DIR) / "queue"
    found = [path for path in queue_dir.glob("*.msg") if task_id in path.read_text(errors="replace")]
    try:
        assert len(found) == 1, "the order was not written to the broker"
        message = json.loads(found[0].read_text())
        assert message["headers"]["task"] == "agent.inventory" and message["headers"]["id"] == task_id
        assert task.state == SettingsTask.State.PENDING
    finally:
        for path in found:
            path.unlink(missing_ok=True)


def test_a_rolled_back_request_publishes_nothing(admin, django_capture_on_commit_callbacks):
    site = SiteFactory()
    with mock.patch("hub.celery.app.send_task") as send_task:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin.patch(site_url(site, "settings"), {"values": [{"key": "bad key", "value": 1}]},
                                   format="json")
        assert response.status_code == 400
        send_task.assert_not_called()
    assert not SettingsTask.objects.exists()


def test_refresh_says_when_no_agent_is_online_to_run_the_order(admin):
    site = SiteFactory(name="lab")
    body = admin.post(site_url(site, "refresh")).json()
    assert body["agent_online"] is False and "No agent node of site 'lab' is online" in body["detail"]
    online(site=site)
    body = admin.post(site_url(site, "refresh")).json()
    assert body["agent_online"] is True and "detail" not in body
