"""External targets: the permission matrix, space-based visibility, validation, agent configuration
(CONFIGURE/REMOVE tasks and is_ready), and the remote listing contract of /files/."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.urls import reverse
from django.utils import timezone

from hub import configuration, permissions
from sites.models import Bucket, ExternalTarget, SettingsTask
from sites.services import site_tasks
from sites.services import targets as target_service
from tests.api.matrix import PermissionMatrix
from tests.api.test_buckets import answer, s3_payload
from tests.factories import BucketFactory, ExternalTargetFactory, NodeFactory, SiteFactory, SpaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

REFERENCE_FIELDS = {
    "advanced_settings", "available_on_sites", "backup_only", "backup_site", "bucket", "bucket_instance",
    "delete_on_recall", "enabled", "endpoint_name", "id", "is_ready", "local_file_regex", "name", "space", "url",
}


def target_url(target: ExternalTarget | int) -> str:
    return reverse("externaltarget-detail", args=[getattr(target, "pk", target)])


def files_url(target: ExternalTarget | int) -> str:
    return reverse("externaltarget-files", args=[getattr(target, "pk", target)])


def payload(space, bucket, **overrides: Any) -> dict[str, Any]:
    return {"name": "cold-archive", "space": space.pk, "bucket_instance": bucket.pk,
            "local_file_regex": r".*\.(tif|raw)$", **overrides}


def tasks(tasktype: str, **filters: Any) -> list[SettingsTask]:
    return list(SettingsTask.objects.filter(tasktype=tasktype, **filters).order_by("pk"))


# --- the permission matrix -------------------------------------------------------------------------

class TestExternalTargetPermissions(PermissionMatrix):
    basename = "externaltarget"
    update_field = "local_file_regex"

    def estate(self):
        if not hasattr(self, "_estate"):
            site = SiteFactory()
            self._estate = (site, SpaceFactory(sites=[site]), BucketFactory())
        return self._estate

    def make_target(self):
        site, space, bucket = self.estate()
        return ExternalTargetFactory(space=space, bucket=bucket, available_on_sites=[site])

    def create_payload(self):
        site, space, bucket = self.estate()
        return payload(space, bucket)

    def update_payload(self):
        return {"local_file_regex": r"\.tif$"}

    def bad_payloads(self):
        site, space, bucket = self.estate()
        stranger = SiteFactory()
        return [
            ({"space": space.pk, "bucket_instance": bucket.pk, "local_file_regex": ".*"}, "name"),
            (payload(space, bucket, name="has space"), "name"),
            (payload(space, bucket, local_file_regex="(unclosed"), "local_file_regex"),
            (payload(space, bucket, local_file_regex="a" * 1001), "local_file_regex"),
            (payload(space, bucket, local_file_regex=""), "local_file_regex"),
            ({k: v for k, v in payload(space, bucket).items() if k != "space"}, "space"),
            ({**payload(space, bucket), "space": 999999}, "space"),
            ({k: v for k, v in payload(space, bucket).items() if k != "bucket_instance"}, "bucket_instance"),
            ({**payload(space, bucket), "bucket": s3_payload()}, "bucket_instance"),
            (payload(space, bucket, bucket_instance=999999), "bucket_instance"),
            (payload(space, bucket, available_on_sites=[stranger.pk]), "available_on_sites"),
            (payload(space, bucket, available_on_sites=["x"]), "available_on_sites"),
            (payload(space, bucket, available_on_sites=[site.pk], backup_site=stranger.pk), "backup_site"),
            (payload(space, bucket, advanced_settings="text"), "advanced_settings"),
            (payload(space, bucket, enabled="sometimes"), "enabled"),
        ]


# --- visibility through the space ---------------------------------------------------------------

@pytest.fixture
def estate(db):
    """Two sites, a space on both, an S3 bucket."""
    site_a, site_b = SiteFactory(name="london"), SiteFactory(name="leeds")
    return {"a": site_a, "b": site_b, "space": SpaceFactory(sites=[site_a, site_b]), "bucket": BucketFactory()}


def test_representation_has_the_reference_fields_and_a_masked_nested_bucket(admin, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"], available_on_sites=[estate["a"]])
    body = admin.get(target_url(target)).json()
    assert REFERENCE_FIELDS <= set(body)
    assert body["bucket_instance"] == estate["bucket"].pk
    assert body["bucket"]["id"] == estate["bucket"].pk and body["bucket"]["secret_access_key"] == "********"
    assert body["space"] == {"id": estate["space"].pk, "name": estate["space"].name,
                             "mountpoint": estate["space"].mountpoint,
                             "sites": sorted([estate["a"].pk, estate["b"].pk])}
    assert body["endpoint_name"] == f"s3-{target.pk}-{target.name}"
    assert body["available_on_sites"] == [estate["a"].pk] and body["is_ready"] is False


def test_viewers_of_the_space_see_its_targets_and_their_bucket_but_cannot_change_them(member, member_user, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"])
    hidden = ExternalTargetFactory()
    assert member.get(reverse("externaltarget-list")).json()["count"] == 0
    permissions.grant("sites.view_space", member_user, estate["space"])
    listed = member.get(reverse("externaltarget-list")).json()["results"]
    assert [item["id"] for item in listed] == [target.pk]
    assert listed[0]["bucket"]["access_key_id"] == "********"
    assert member.get(target_url(hidden)).status_code == 404
    assert member.get(reverse("bucket-detail", args=[estate["bucket"].pk])).status_code == 404
    assert member.patch(target_url(target), {"enabled": False}, format="json").status_code == 403
    assert member.delete(target_url(target)).status_code == 403


def test_administrators_of_the_space_manage_its_targets_with_a_bucket_they_may_view(member, member_user, estate):
    permissions.grant("sites.view_space", member_user, estate["space"])
    permissions.grant("sites.change_space", member_user, estate["space"])
    body = payload(estate["space"], estate["bucket"])
    refused = member.post(reverse("externaltarget-list"), body, format="json")
    assert refused.status_code == 403 and "bucket" in refused.json()["detail"]
    permissions.grant("sites.view_bucket", member_user, estate["bucket"])
    created = member.post(reverse("externaltarget-list"), body, format="json")
    assert created.status_code == 201, created.content
    patched = member.patch(target_url(created.json()["id"]), {"enabled": False}, format="json")
    assert patched.status_code == 200 and patched.json()["enabled"] is False


def test_a_space_administrator_cannot_create_a_bucket_through_a_target(member, member_user, estate):
    permissions.grant("sites.view_space", member_user, estate["space"])
    permissions.grant("sites.change_space", member_user, estate["space"])
    body = {k: v for k, v in payload(estate["space"], estate["bucket"]).items() if k != "bucket_instance"}
    response = member.post(reverse("externaltarget-list"), {**body, "bucket": s3_payload()}, format="json")
    assert response.status_code == 403
    assert Bucket.objects.count() == 1 and not ExternalTarget.objects.exists()


def test_another_spaces_administrator_cannot_add_a_target_to_this_space(member, member_user, estate):
    other = SpaceFactory()
    permissions.grant("sites.change_space", member_user, other)
    permissions.grant("sites.view_bucket", member_user, estate["bucket"])
    response = member.post(reverse("externaltarget-list"), payload(estate["space"], estate["bucket"]), format="json")
    assert response.status_code == 403


# --- creation ----------------------------------------------------------------------------------

def test_create_with_a_nested_bucket_creates_the_bucket(admin, estate):
    body = {k: v for k, v in payload(estate["space"], estate["bucket"]).items() if k != "bucket_instance"}
    response = admin.post(reverse("externaltarget-list"), {**body, "bucket": s3_payload(name="fresh-bucket")},
                          format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    bucket = Bucket.objects.get(pk=created["bucket_instance"])
    assert bucket.name == "fresh-bucket" and bucket.secret_access_key == s3_payload()["secret_access_key"]
    assert created["bucket"]["secret_access_key"] == "********" and created["bucket"]["name"] == "fresh-bucket"


def test_an_invalid_nested_bucket_is_a_400_that_writes_nothing(admin, estate):
    body = {k: v for k, v in payload(estate["space"], estate["bucket"]).items() if k != "bucket_instance"}
    response = admin.post(reverse("externaltarget-list"), {**body, "bucket": s3_payload(name="NO")}, format="json")
    assert response.status_code == 400 and "name" in response.json()["bucket"]
    assert Bucket.objects.count() == 1 and not ExternalTarget.objects.exists()


def test_available_on_sites_defaults_to_every_site_of_the_space(admin, estate):
    response = admin.post(reverse("externaltarget-list"), payload(estate["space"], estate["bucket"]), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["available_on_sites"] == sorted([estate["a"].pk, estate["b"].pk])


def test_regex_errors_name_the_problem(admin, estate):
    response = admin.post(reverse("externaltarget-list"),
                          payload(estate["space"], estate["bucket"], local_file_regex="data/(raw|tif"), format="json")
    assert response.status_code == 400
    message = response.json()["local_file_regex"][0]
    assert "missing )" in message and "position 5" in message


def test_regex_longer_than_1000_characters_is_refused(admin, estate):
    response = admin.post(reverse("externaltarget-list"),
                          payload(estate["space"], estate["bucket"], local_file_regex="(a|b)" * 201), format="json")
    assert response.status_code == 400 and "1000" in response.json()["local_file_regex"][0]


def test_target_names_are_unique(admin, estate):
    ExternalTargetFactory(name="cold-archive")
    response = admin.post(reverse("externaltarget-list"), payload(estate["space"], estate["bucket"]), format="json")
    assert response.status_code == 400 and "name" in response.json()


def test_backup_site_must_be_one_of_the_available_sites(admin, estate):
    body = payload(estate["space"], estate["bucket"], available_on_sites=[estate["a"].pk], backup_site=estate["b"].pk)
    assert admin.post(reverse("externaltarget-list"), body, format="json").status_code == 400
    body["backup_site"] = estate["a"].pk
    response = admin.post(reverse("externaltarget-list"), body, format="json")
    assert response.status_code == 201 and response.json()["backup_site"] == estate["a"].pk


def test_name_space_and_bucket_cannot_change(admin, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"])
    for change in ({"name": "renamed"}, {"space": SpaceFactory().pk}, {"bucket_instance": BucketFactory().pk},
                   {"bucket": s3_payload()}):
        response = admin.patch(target_url(target), change, format="json")
        assert response.status_code == 400 and set(change) <= set(response.json()), (change, response.content)
    unchanged = admin.patch(target_url(target), {"name": target.name, "space": estate["space"].pk}, format="json")
    assert unchanged.status_code == 200


def test_patch_validates_sites_against_the_merged_target(admin, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"],
                                   available_on_sites=[estate["a"], estate["b"]], backup_site=estate["b"])
    response = admin.patch(target_url(target), {"available_on_sites": [estate["a"].pk]}, format="json")
    assert response.status_code == 400 and "backup_site" in response.json()
    assert admin.patch(target_url(target), {"available_on_sites": [SiteFactory().pk]},
                       format="json").status_code == 400


def test_filters_by_bucket_name_and_space(admin, estate):
    mine = ExternalTargetFactory(space=estate["space"], bucket=BucketFactory(name="wanted"))
    ExternalTargetFactory()
    url = reverse("externaltarget-list")
    assert [t["id"] for t in admin.get(url, {"bucket": "wanted"}).json()["results"]] == [mine.pk]
    assert [t["id"] for t in admin.get(url, {"space": estate["space"].pk}).json()["results"]] == [mine.pk]
    assert admin.get(url, {"space": "abc"}).status_code == 400
    assert admin.get(url, {"space": "99999999999999999999999"}).status_code == 400


# --- agent configuration -----------------------------------------------------------------------

def test_creating_sends_configure_target_without_credentials_to_each_site(admin, estate):
    response = admin.post(reverse("externaltarget-list"), payload(estate["space"], estate["bucket"]), format="json")
    target_id = response.json()["id"]
    configure = tasks("configure_target")
    assert sorted(task.site_id for task in configure) == sorted([estate["a"].pk, estate["b"].pk])
    order = configure[0].request
    assert set(order) == {"endpoint_name", "target", "bucket", "credentials_ref"}
    assert order["endpoint_name"] == response.json()["endpoint_name"]
    assert order["target"]["id"] == target_id and order["target"]["local_file_regex"] == r".*\.(tif|raw)$"
    assert order["credentials_ref"] == {"bucket": estate["bucket"].pk}
    assert not {"access_key_id", "secret_access_key", "access_key", "credentials_json"} & set(order["bucket"])


def test_is_ready_once_every_available_site_confirmed(admin, estate):
    target_id = admin.post(reverse("externaltarget-list"), payload(estate["space"], estate["bucket"]),
                           format="json").json()["id"]
    on_a, on_b = tasks("configure_target")
    answer(on_a)
    body = admin.get(target_url(target_id)).json()
    assert body["configured_on_sites"] == [on_a.site_id] and body["is_ready"] is False
    answer(on_b, "FAILURE", error="bucket unreachable")
    assert admin.get(target_url(target_id)).json()["is_ready"] is False
    admin.patch(target_url(target_id), {"available_on_sites": [estate["a"].pk]}, format="json")
    assert admin.get(target_url(target_id)).json()["is_ready"] is True


def test_taking_a_site_away_removes_the_target_there_only(admin, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"],
                                   available_on_sites=[estate["a"], estate["b"]])
    target.configured_on_sites.set([estate["a"], estate["b"]])
    response = admin.patch(target_url(target), {"available_on_sites": [estate["a"].pk]}, format="json")
    assert response.status_code == 200, response.content
    assert [task.site_id for task in tasks("remove_target")] == [estate["b"].pk]
    assert tasks("configure_target") == []
    assert response.json()["configured_on_sites"] == [estate["a"].pk] and response.json()["is_ready"] is True


def test_adding_a_site_configures_only_that_site(admin, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"], available_on_sites=[estate["a"]])
    target.configured_on_sites.set([estate["a"]])
    admin.patch(target_url(target), {"available_on_sites": [estate["a"].pk, estate["b"].pk]}, format="json")
    assert [task.site_id for task in tasks("configure_target")] == [estate["b"].pk]


def test_changing_what_agents_know_reconfigures_every_site(admin, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"],
                                   available_on_sites=[estate["a"], estate["b"]])
    target.configured_on_sites.set([estate["a"], estate["b"]])
    response = admin.patch(target_url(target), {"local_file_regex": r"\.raw$"}, format="json")
    assert response.json()["is_ready"] is False
    assert sorted(task.site_id for task in tasks("configure_target")) == sorted([estate["a"].pk, estate["b"].pk])
    assert all(task.request["target"]["local_file_regex"] == r"\.raw$" for task in tasks("configure_target"))


def test_a_superseded_confirmation_does_not_count(admin, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"], available_on_sites=[estate["a"]])
    admin.patch(target_url(target), {"local_file_regex": "one"}, format="json")
    admin.patch(target_url(target), {"local_file_regex": "two"}, format="json")
    older, newer = tasks("configure_target")
    answer(older)
    assert not target.configured_on_sites.exists()
    answer(newer)
    assert list(target.configured_on_sites.all()) == [estate["a"]]


def test_deleting_a_target_removes_it_from_its_sites_and_keeps_the_bucket(admin, estate):
    target = ExternalTargetFactory(space=estate["space"], bucket=estate["bucket"],
                                   available_on_sites=[estate["a"], estate["b"]])
    assert admin.delete(target_url(target)).status_code == 204
    assert not ExternalTarget.objects.filter(pk=target.pk).exists()
    assert Bucket.objects.filter(pk=estate["bucket"].pk).exists()
    removal = tasks("remove_target")
    assert sorted(task.site_id for task in removal) == sorted([estate["a"].pk, estate["b"].pk])
    assert removal[0].request["target"]["id"] == target.pk
    answer(removal[0])  # a late report for a deleted target is harmless


# --- /external_targets/{id}/files/ --------------------------------------------------------------

LISTING = {
    "path": "aws/",
    "marker": "",
    "next_marker": "aws/cats-0100.jpg",
    "files": [{"name": "cats-0001.jpg", "path": "aws/cats-0001.jpg", "size": 48213, "type": "file"}],
    "directories": [{"name": "dogs", "path": "aws/dogs/", "size": None, "type": "directory"}],
    "summary": {"files": 1, "directories": 1},
}


def live_target(**kwargs: Any) -> ExternalTarget:
    site = SiteFactory()
    NodeFactory(site=site, last_heartbeat=timezone.now())
    return ExternalTargetFactory(space=SpaceFactory(sites=[site]), available_on_sites=[site], **kwargs)


class Broker:
    """Stands in for the broker: records published orders and lets a thread wait for one."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.arrived = threading.Event()

    def publish(self, pk: int, task_id: str, name: str, queue: str, payload: dict[str, Any]) -> None:
        self.sent.append({"task_id": task_id, "name": name, "queue": queue, "payload": payload})
        self.arrived.set()


@pytest.fixture
def broker(monkeypatch) -> Broker:
    """Orders are recorded instead of being sent to the filesystem broker."""
    fake = Broker()
    monkeypatch.setattr(site_tasks, "_publish", fake.publish)
    return fake


def retry_locked(work, *, attempts: int = 100):
    """Run ``work()``, retrying while SQLite's shared-cache test database reports a lock."""
    for _ in range(attempts):
        try:
            return work()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.01)
    raise AssertionError("the test database stayed locked")


def play_agent(broker: Broker, reply) -> tuple[threading.Thread, list[BaseException]]:
    """A thread playing the site's agent: it waits for the order to be published (after the
    SettingsTask row is committed), reads the row and reports ``reply(task)`` with record_result."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            assert broker.arrived.wait(timeout=5), "no order was published"
            task_id = broker.sent[-1]["task_id"]
            task = retry_locked(lambda: SettingsTask.objects.get(task_id=task_id))
            assert task.tasktype == "list_target" and task.state == "PENDING"
            report = {"task_id": task_id, **reply(task)}
            retry_locked(lambda: site_tasks.record_result(report))
        except BaseException as exc:  # re-raised by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def finish(agent: tuple[threading.Thread, list[BaseException]]) -> None:
    thread, errors = agent
    thread.join(timeout=5)
    assert not thread.is_alive() and not errors, errors


@pytest.mark.parametrize("query", [
    {"max_items": 0}, {"max_items": 1001}, {"max_items": "many"}, {"path": "a/../../etc"},
    {"marker": "m" * 1025},
])
def test_files_query_parameters_are_validated(admin, query):
    target = live_target()
    response = admin.get(files_url(target), query)
    assert response.status_code == 400 and set(query) <= set(response.json())


def test_files_of_a_target_the_caller_cannot_see_is_a_404(outsider, anon):
    target = live_target()
    assert outsider.get(files_url(target)).status_code == 404
    assert anon.get(files_url(target)).status_code == 401
    assert outsider.get(files_url(999999)).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_files_without_a_live_agent_is_a_503_at_once(admin, broker):
    site = SiteFactory(name="darksite")
    NodeFactory(site=site, last_heartbeat=timezone.now() - timedelta(hours=3))
    target = ExternalTargetFactory(space=SpaceFactory(sites=[site]), available_on_sites=[site])
    started = time.monotonic()
    response = admin.get(files_url(target))
    assert response.status_code == 503
    assert time.monotonic() - started < 1
    assert "darksite" in response.json()["detail"]
    assert not SettingsTask.objects.filter(tasktype="list_target").exists() and broker.sent == []


@pytest.mark.django_db(transaction=True)
def test_files_of_a_target_on_no_site_is_a_503(admin):
    response = admin.get(files_url(ExternalTargetFactory()))
    assert response.status_code == 503 and "not available on any site" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_files_when_no_agent_answers_is_a_504_after_stat_timeout(admin, broker):
    assert admin.patch(reverse("configurations"), {"stat_timeout": 1}, format="json").status_code == 200
    target = live_target()
    started = time.monotonic()
    response = admin.get(files_url(target))
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.content
    assert 1 <= elapsed < 3
    task = SettingsTask.objects.get(tasktype="list_target")
    assert response.json()["task_id"] == str(task.task_id)
    assert task.state == "FAILURE" and "stat_timeout" in task.results["error"]
    assert [message["queue"] for message in broker.sent] == [target.available_on_sites.get().name]


@pytest.mark.django_db(transaction=True)
def test_files_answers_the_agents_listing(admin, broker):
    configuration.update({"maximum_external_results": 37})
    target = live_target()
    orders: list[dict[str, Any]] = []

    def reply(task: SettingsTask) -> dict[str, Any]:
        orders.append(task.request)
        return {"state": "SUCCESS", "results": LISTING}

    agent = play_agent(broker, reply)
    response = admin.get(files_url(target), {"path": "/aws/", "marker": "aws/cats-0000.jpg"})
    finish(agent)
    assert response.status_code == 200, response.content
    assert response.json() == LISTING
    assert orders == [{"endpoint_name": target.endpoint_name, "path": "aws/", "max_items": 37,
                       "marker": "aws/cats-0000.jpg"}]
    assert broker.sent[0]["payload"] == orders[0] and broker.sent[0]["name"] == "agent.list_target"


@pytest.mark.django_db(transaction=True)
def test_files_reports_the_agents_error_as_a_502(admin, broker):
    target = live_target()
    agent = play_agent(broker, lambda task: {"state": "FAILURE", "error": "AccessDenied: listing not allowed"})
    response = admin.get(files_url(target), {"max_items": 5})
    finish(agent)
    assert response.status_code == 502, response.content
    body = response.json()
    assert body["error"] == "AccessDenied: listing not allowed" and body["task_id"]


@pytest.mark.django_db(transaction=True)
def test_files_refuses_a_malformed_agent_answer_with_a_502(admin, broker):
    target = live_target()
    agent = play_agent(broker, lambda task: {"state": "SUCCESS", "results": {"files": "not a list"}})
    response = admin.get(files_url(target))
    finish(agent)
    assert response.status_code == 502 and "malformed" in response.json()["detail"]


def test_files_of_a_soft_deleting_buckets_target_is_a_conflict(admin):
    target = live_target()
    Bucket.objects.filter(pk=target.bucket_id).update(soft_deleting=True)
    assert admin.get(files_url(target)).status_code == 409


def test_default_max_items_is_bounded_by_1000():
    configuration.update({"maximum_external_results": 5000})
    assert target_service.default_max_items() == 1000


def test_target_and_bucket_lists_take_constant_queries_whatever_their_size(admin):
    from django.test.utils import CaptureQueriesContext

    def build(count: int) -> None:
        for _ in range(count):
            sites = [SiteFactory(), SiteFactory()]
            bucket = BucketFactory()
            target = ExternalTargetFactory(bucket=bucket, space=SpaceFactory(sites=sites), available_on_sites=sites)
            target.configured_on_sites.set(sites[:1])
            admin.delete(reverse("bucket-detail", args=[bucket.pk]))  # soft-deleting, with tasks
            removal = SettingsTask.objects.filter(tasktype="remove_target", site=sites[0]).latest("pk")
            answer(removal, "FAILURE", error="broken")

    def count(url: str) -> int:
        with CaptureQueriesContext(connection) as context:
            assert admin.get(url, {"page_size": 100}).status_code == 200
        return len(context.captured_queries)

    urls = [reverse("externaltarget-list"), reverse("bucket-list")]
    build(2)
    [count(url) for url in urls]  # warm the per-process caches (content types, permissions)
    few = [count(url) for url in urls]
    build(8)
    assert [count(url) for url in urls] == few
    listed = admin.get(reverse("bucket-list")).json()["results"]
    assert len(listed) == 10 and all("broken" in item["deletion_error"] for item in listed)
