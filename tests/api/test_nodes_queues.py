"""Nodes, queues and site tasks: heartbeats, what users may do, visibility through the site, filters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hub import configuration, permissions
from hub.models import AuditEvent
from sites.api.serializers.sites import NodeSerializer
from sites.api.views.sites import NodeViewSet
from sites.models import Node, Queue, SettingsTask
from sites.services import nodes as node_service
from sites.services.site_tasks import record_result, send_site_task
from tests.api.matrix import PermissionMatrix
from tests.factories import GroupFactory, NodeFactory, SiteFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def beat(site: str = "lab", node: str = "nsd1", queues=None, sent_at=None, **extra):
    return {"site": site, "node": node, "queues": ["default"] if queues is None else queues,
            "sent_at": (sent_at or timezone.now()).isoformat(), **extra}


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


# --- nodes: the permission matrix, adapted to a resource that heartbeats create ------------------

class TestNodePermissions(PermissionMatrix):
    basename = "node"
    update_field = "name"

    def make_target(self):
        # Silent for an hour: deletable.
        return NodeFactory(last_heartbeat=ago(3600))

    def create_payload(self):
        return {"name": "new-node", "site": "whatever"}

    def update_payload(self):
        return {}

    def bad_payloads(self):
        return []

    def test_outsider_create_is_refused_unless_owners_may_create(self, outsider, db):
        assert outsider.post(self.list_url(), self.create_payload(), format="json").status_code == 405

    def test_member_granted_change_can_patch(self, member, member_user, target):
        for action in ("view", "change"):
            permissions.grant(permissions.perm_name(Node, action), member_user, target)
        response = member.patch(self.detail_url(target), {}, format="json")
        assert response.status_code == 200 and response.json()["name"] == target.name

    def test_admin_can_create_read_patch_delete_and_each_write_is_audited(self, admin, target):
        assert admin.post(self.list_url(), self.create_payload(), format="json").status_code == 405
        assert not Node.objects.exclude(pk=target.pk).exists()
        assert target.pk in self.listed_ids(admin.get(self.list_url()))
        assert admin.patch(self.detail_url(target), {}, format="json").status_code == 200
        assert admin.delete(self.detail_url(target)).status_code == 204
        actions = set(AuditEvent.objects.filter(model="sites.node").values_list("action", flat=True))
        assert {"update", "delete"} <= actions

    def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(self, admin, target):
        before = Node.objects.values().get(pk=target.pk)
        for payload, field in [
            ({"last_heartbeat": timezone.now().isoformat()}, "last_heartbeat"),
            ({"name": "renamed"}, "name"),
            ({"site": "elsewhere"}, "site"),
            ({"queues": ["default"]}, "queues"),
            ({"online": True}, "online"),
        ]:
            response = admin.patch(self.detail_url(target), payload, format="json")
            assert response.status_code == 400, (payload, response.content)
            assert field in response.json()
            assert "heartbeats" in response.json()[field][0]
        assert Node.objects.values().get(pk=target.pk) == before
        assert not AuditEvent.objects.filter(model="sites.node").exists()

    def test_malformed_json_is_a_400(self, admin, target):
        response = admin.generic("PATCH", self.detail_url(target), "{not json", content_type="application/json")
        assert response.status_code == 400


def test_a_node_shows_its_site_queues_and_whether_it_is_online(admin):
    site = SiteFactory(name="lab")
    node = NodeFactory(site=site, name="nsd1", last_heartbeat=ago(5), queues=["default", "transfer"])
    body = admin.get(reverse("node-detail", args=[node.pk])).json()
    assert body["site"] == "lab" and body["name"] == "nsd1"
    assert body["online"] is True and body["has_default_queue"] is True
    assert body["queues"] == ["default", "transfer"]
    assert set(body) >= {"id", "name", "site", "last_heartbeat", "online", "has_default_queue", "url"}
    transfer_only = NodeFactory(site=site, last_heartbeat=ago(5), queues=["transfer"])
    assert admin.get(reverse("node-detail", args=[transfer_only.pk])).json()["has_default_queue"] is False


def test_online_follows_the_configured_heartbeat_interval(admin):
    node = NodeFactory(last_heartbeat=ago(300))
    url = reverse("node-detail", args=[node.pk])
    assert admin.get(url).json()["online"] is False
    configuration.update({"node_health_last_heartbeat_interval": 600})
    assert admin.get(url).json()["online"] is True


def test_a_node_that_never_beat_is_offline(admin):
    node = NodeFactory(last_heartbeat=None)
    assert admin.get(reverse("node-detail", args=[node.pk])).json()["online"] is False


def test_an_online_node_cannot_be_deleted(admin):
    node = NodeFactory(name="nsd1", last_heartbeat=ago(5))
    response = admin.delete(reverse("node-detail", args=[node.pk]))
    assert response.status_code == 409
    assert "nsd1" in response.json()["detail"] and "online" in response.json()["detail"]
    assert Node.objects.filter(pk=node.pk).exists()


def test_a_silent_node_can_be_deleted_and_leaves_its_queues(admin):
    node = NodeFactory(last_heartbeat=ago(3600), queues=["default", "transfer"])
    assert admin.delete(reverse("node-detail", args=[node.pk])).status_code == 204
    assert not Node.objects.filter(pk=node.pk).exists()
    assert Queue.objects.filter(site=node.site).count() == 2


def test_nodes_filter_by_site_and_online(admin):
    lab, other = SiteFactory(name="lab"), SiteFactory(name="other")
    up = NodeFactory(site=lab, last_heartbeat=ago(5))
    down = NodeFactory(site=lab, last_heartbeat=ago(3600))
    never = NodeFactory(site=lab, last_heartbeat=None)
    elsewhere = NodeFactory(site=other, last_heartbeat=ago(5))
    ids = lambda **query: {row["id"] for row in results(admin.get(reverse("node-list"), query))}  # noqa: E731
    assert ids(site="lab") == {up.pk, down.pk, never.pk}
    assert ids(online="true") == {up.pk, elsewhere.pk}
    assert ids(online="false", site="lab") == {down.pk, never.pk}
    assert admin.get(reverse("node-list"), {"online": "sometimes"}).status_code == 400


def test_node_listing_costs_the_same_number_of_queries_for_few_and_many(admin):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin.get(reverse("node-list"), {"page_size": 100}).status_code == 200
        return len(captured)

    site = SiteFactory()
    for _ in range(2):
        NodeFactory(site=site, last_heartbeat=ago(5), queues=["default", "transfer"])
    few = queries()
    for _ in range(30):
        NodeFactory(site=SiteFactory(), last_heartbeat=ago(5), queues=["default", "transfer"])
    assert queries() == few


# --- heartbeats ----------------------------------------------------------------------------------

def test_first_heartbeat_creates_the_node_and_its_queues():
    site = SiteFactory(name="lab")
    node = node_service.record_heartbeat(beat(queues=["default", "discovery"], info={"version": "1.2"}))
    assert node.site == site and node.name == "nsd1" and node.info == {"version": "1.2"}
    assert sorted(node.queues.values_list("name", flat=True)) == ["default", "discovery"]
    assert Queue.objects.get(site=site, name="discovery").last_heartbeat == node.last_heartbeat


def test_a_heartbeat_from_a_node_name_with_a_slash_is_rejected():
    SiteFactory(name="lab")
    with pytest.raises(node_service.HeartbeatRejected, match="without '/'"):
        node_service.record_heartbeat(beat(node="rack1/nsd1"))
    assert not Node.objects.exists()


def test_heartbeats_never_move_last_heartbeat_backwards():
    SiteFactory(name="lab")
    newer = ago(10)
    node = node_service.record_heartbeat(beat(sent_at=newer))
    node = node_service.record_heartbeat(beat(sent_at=ago(100)))  # a delayed message
    assert node.last_heartbeat == newer
    assert Queue.objects.get(name="default").last_heartbeat == newer
    newest = ago(1)
    assert node_service.record_heartbeat(beat(sent_at=newest)).last_heartbeat == newest


def test_a_heartbeat_from_the_future_counts_as_now():
    SiteFactory(name="lab")
    node = node_service.record_heartbeat(beat(sent_at=timezone.now() + timedelta(days=1)))
    assert node.last_heartbeat <= timezone.now()


def test_a_node_queue_set_is_what_it_says_now():
    SiteFactory(name="lab")
    node_service.record_heartbeat(beat(queues=["default", "transfer"]))
    node = node_service.record_heartbeat(beat(queues=["default"]))
    assert list(node.queues.values_list("name", flat=True)) == ["default"]
    assert Queue.objects.filter(name="transfer").exists()  # the queue stays, without this node


@pytest.mark.parametrize("bad", [
    {"site": "nowhere"}, {"node": ""}, {"node": "x" * 256}, {"queues": ["bad name"]}, {"queues": "default"},
    {"queues": ["x" * 101]},
])
def test_malformed_heartbeats_are_rejected_and_change_nothing(bad):
    SiteFactory(name="lab")
    with pytest.raises(node_service.HeartbeatRejected):
        node_service.record_heartbeat({**beat(), **bad})
    assert not Node.objects.exists()


# --- queues --------------------------------------------------------------------------------------

def test_queues_show_their_site_nodes_and_whether_they_are_default(admin):
    site = SiteFactory(name="lab")
    NodeFactory(site=site, name="b-node", last_heartbeat=ago(5), queues=["default", "transfer"])
    NodeFactory(site=site, name="a-node", last_heartbeat=ago(3600), queues=["default"])
    rows = {row["name"]: row for row in results(admin.get(reverse("queue-list"), {"site": "lab"}))}
    assert set(rows) == {"default", "transfer"}
    assert rows["default"]["nodes"] == ["a-node", "b-node"] and rows["default"]["is_default"] is True
    assert rows["transfer"]["nodes"] == ["b-node"] and rows["transfer"]["is_default"] is False
    assert rows["transfer"]["online"] is True and rows["default"]["site"] == "lab"
    assert set(rows["default"]) >= {"id", "name", "label", "site", "nodes", "last_heartbeat"}
    detail = admin.get(reverse("queue-detail", args=[rows["transfer"]["id"]])).json()
    assert detail["nodes"] == ["b-node"]


def test_a_queue_whose_nodes_are_silent_is_not_online(admin):
    NodeFactory(last_heartbeat=ago(3600), queues=["transfer"])
    row = next(r for r in results(admin.get(reverse("queue-list"))) if r["name"] == "transfer")
    assert row["online"] is False


def test_queues_are_read_only(admin):
    queue = SiteFactory().queues.get()
    assert admin.post(reverse("queue-list"), {"name": "x"}, format="json").status_code == 405
    assert admin.patch(reverse("queue-detail", args=[queue.pk]), {"label": "x"}, format="json").status_code == 405
    assert admin.delete(reverse("queue-detail", args=[queue.pk])).status_code == 405


def test_queue_listing_costs_the_same_number_of_queries_for_few_and_many(admin):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin.get(reverse("queue-list"), {"page_size": 100}).status_code == 200
        return len(captured)

    NodeFactory(last_heartbeat=ago(5))
    few = queries()
    for _ in range(30):
        NodeFactory(last_heartbeat=ago(5), queues=["default", "transfer"])
    assert queries() == few


# --- site tasks ----------------------------------------------------------------------------------

def test_a_settings_task_shows_the_reference_fields_and_runtime(admin):
    site = SiteFactory(name="lab")
    task = send_site_task(site, SettingsTask.TaskType.INVENTORY, {"site": "lab"}, friendly_name="Refresh lab")
    body = admin.get(reverse("settingstask-detail", args=[task.pk])).json()
    assert {"id", "job", "site", "started", "completed", "state", "task_id", "tasktype", "url", "friendly_name",
            "request", "results", "runtime"} <= set(body)
    assert body["site"] == "lab" and body["state"] == "PENDING" and body["runtime"] is None
    assert body["request"] == {"site": "lab"} and body["friendly_name"] == "Refresh lab"
    started = timezone.now() - timedelta(seconds=30)
    record_result({"task_id": str(task.task_id), "state": "STARTED", "at": started.isoformat()})
    record_result({"task_id": str(task.task_id), "state": "SUCCESS", "results": {"pools": 1},
                   "at": (started + timedelta(seconds=12.5)).isoformat()})
    body = admin.get(reverse("settingstask-detail", args=[task.pk])).json()
    assert body["state"] == "SUCCESS" and body["results"] == {"pools": 1}
    assert body["runtime"] == pytest.approx(12.5)


def test_settings_tasks_filter_by_type_states_job_site_and_task_id(admin):
    lab, other = SiteFactory(name="lab"), SiteFactory(name="other")
    inventory = send_site_task(lab, "inventory", {})
    apply = send_site_task(lab, "apply_settings", {})
    SettingsTask.objects.filter(pk=apply.pk).update(state="STARTED", job=7)
    done = send_site_task(other, "inventory", {})
    SettingsTask.objects.filter(pk=done.pk).update(state="SUCCESS")
    ids = lambda query: {row["id"] for row in results(admin.get(reverse("settingstask-list"), query))}  # noqa: E731
    assert ids({"tasktype": "inventory"}) == {inventory.pk, done.pk}
    assert ids({"state": ["PENDING", "STARTED"]}) == {inventory.pk, apply.pk}
    assert ids({"job_id": 7}) == {apply.pk}
    assert ids({"site": "other"}) == {done.pk}
    assert ids({"task_id": str(apply.task_id)}) == {apply.pk}
    for bad in ({"state": "LOST"}, {"tasktype": "format_disk"}, {"job_id": "seven"}, {"task_id": "nope"}):
        assert admin.get(reverse("settingstask-list"), bad).status_code == 400, bad


def test_settings_tasks_are_read_only(admin):
    task = send_site_task(SiteFactory(), "inventory", {})
    url = reverse("settingstask-detail", args=[task.pk])
    assert admin.post(reverse("settingstask-list"), {}, format="json").status_code == 405
    assert admin.patch(url, {"state": "SUCCESS"}, format="json").status_code == 405
    assert admin.delete(url).status_code == 405


def test_settings_task_listing_costs_the_same_number_of_queries_for_few_and_many(admin):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin.get(reverse("settingstask-list"), {"page_size": 100}).status_code == 200
        return len(captured)

    send_site_task(SiteFactory(), "inventory", {}, actor=None)
    few = queries()
    for _ in range(30):
        send_site_task(SiteFactory(), "inventory", {})
    assert queries() == few


# --- visibility through the site -----------------------------------------------------------------

def test_a_group_granted_view_on_a_site_sees_its_nodes_queues_and_tasks_only(member, member_user, anon):
    group = GroupFactory()
    member_user.groups.add(group)
    mine, theirs = SiteFactory(name="mine"), SiteFactory(name="theirs")
    permissions.grant("sites.view_site", group, mine)
    my_node, their_node = NodeFactory(site=mine, last_heartbeat=ago(5)), NodeFactory(site=theirs)
    my_task, their_task = send_site_task(mine, "inventory", {}), send_site_task(theirs, "inventory", {})

    assert {row["id"] for row in results(member.get(reverse("node-list")))} == {my_node.pk}
    assert {row["site"] for row in results(member.get(reverse("queue-list")))} == {"mine"}
    assert {row["id"] for row in results(member.get(reverse("settingstask-list")))} == {my_task.pk}
    assert member.get(reverse("node-detail", args=[my_node.pk])).status_code == 200
    assert member.get(reverse("node-detail", args=[their_node.pk])).status_code == 404
    assert member.get(reverse("queue-detail", args=[theirs.queues.get().pk])).status_code == 404
    assert member.get(reverse("settingstask-detail", args=[my_task.pk])).status_code == 200
    assert member.get(reverse("settingstask-detail", args=[their_task.pk])).status_code == 404
    # Seeing is not administering: a silent node of the site still cannot be deleted by the group.
    silent = NodeFactory(site=mine, last_heartbeat=ago(3600))
    assert member.delete(reverse("node-detail", args=[silent.pk])).status_code == 403
    for name in ("node-list", "queue-list", "settingstask-list"):
        assert anon.get(reverse(name)).status_code == 401


def test_a_group_administering_a_site_may_delete_its_silent_nodes(member, member_user):
    group = GroupFactory()
    member_user.groups.add(group)
    site = SiteFactory()
    for action in ("view", "delete"):
        permissions.grant(f"sites.{action}_site", group, site)
    silent = NodeFactory(site=site, last_heartbeat=ago(3600))
    assert member.delete(reverse("node-detail", args=[silent.pk])).status_code == 204


def test_a_patch_never_writes_back_an_older_heartbeat(admin):
    node = NodeFactory(last_heartbeat=ago(60))
    stale = Node.objects.get(pk=node.pk)
    newer = ago(1)
    Node.objects.filter(pk=node.pk).update(last_heartbeat=newer)
    # The view loads the row, then a heartbeat lands before it would save: simulate with the stale copy.
    view = NodeViewSet()
    serializer = NodeSerializer(stale, data={}, partial=True)
    assert serializer.is_valid()
    view.update_instance(serializer)
    assert Node.objects.get(pk=node.pk).last_heartbeat == newer
    assert admin.patch(reverse("node-detail", args=[node.pk]), {}, format="json").json()["last_heartbeat"]
