"""Spaces: placements on sites, mountpoint rules, snapshot schedules, readiness, deletion, links."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hub import permissions
from sites.models import NfsClient, NfsShare, SettingsTask, SmbShare, SnapshotSchedule, Space, SpaceSite
from sites.services.site_tasks import record_result
from tests.api.matrix import PermissionMatrix
from tests.conftest import api_client
from tests.factories import (
    ExternalTargetFactory,
    FilesystemFactory,
    GroupFactory,
    SiteFactory,
    SpaceFactory,
    StoragePoolFactory,
    UserFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

LIST = "space-list"


def detail(space: Space) -> str:
    return reverse("space-detail", args=[space.pk])


def create(client, **payload):
    return client.post(reverse(LIST), payload, format="json")


def nfs_share(space: Space, path: str | None = None, **fields) -> NfsShare:
    share = NfsShare.objects.create(space=space, path=path or space.mountpoint, **fields)
    NfsClient.objects.create(nfs_share=share, hosts="*")
    return share


def tasks(site, tasktype=SettingsTask.TaskType.CREATE_SPACE):
    return list(SettingsTask.objects.filter(site=site, tasktype=tasktype).order_by("id"))


def play_agent(task: SettingsTask, state: str = "SUCCESS") -> None:
    record_result({"task_id": str(task.task_id), "state": state, "results": {}})


class TestSpacePermissions(PermissionMatrix):
    basename = "space"
    update_field = "name"

    def _site(self):
        if not hasattr(self, "site"):
            self.site = SiteFactory()
        return self.site

    def make_target(self):
        return SpaceFactory(sites=[SiteFactory()])

    def create_payload(self):
        return {"name": "projects", "mountpoint": "/mmfs1/projects", "sites": [self._site().name]}

    def update_payload(self):
        return {"name": "renamed-space"}

    def bad_payloads(self):
        site = self._site().name
        ok = {"name": "ok", "mountpoint": "/mmfs1/ok", "sites": [site]}
        return [
            ({}, "name"),
            ({**ok, "name": ""}, "name"),
            ({**ok, "name": "a/b"}, "name"),
            ({**ok, "mountpoint": "relative/path"}, "mountpoint"),
            ({**ok, "mountpoint": "/mmfs1/../etc"}, "mountpoint"),
            ({**ok, "mountpoint": "/mmfs1/./x"}, "mountpoint"),
            ({**ok, "mountpoint": "/"}, "mountpoint"),
            ({**ok, "mountpoint": "///"}, "mountpoint"),
            ({**ok, "mountpoint": "/mmfs1/a\nb"}, "mountpoint"),
            ({**ok, "mountpoint": "/mmfs1/a\x00b"}, "mountpoint"),
            ({**ok, "sites": []}, "sites"),
            ({**ok, "sites": "just-a-string"}, "sites"),
            ({**ok, "sites": ["no-such-site"]}, "sites"),
            ({**ok, "sites": [site, site]}, "sites"),
            ({**ok, "sites": [{"name": site, "colour": "red"}]}, "sites"),
            ({**ok, "sites": [{"name": site, "pool": "no-such-pool"}]}, "sites"),
            ({**ok, "size": -1}, "size"),
            ({**ok, "size": 2**64}, "size"),
            ({**ok, "color": [1, 2]}, "color"),
            ({**ok, "color": [1, 2, 3, 4, 5]}, "color"),
            ({**ok, "color": [0, 0, 256]}, "color"),
            ({**ok, "permission_mode": "chmodEverything"}, "permission_mode"),
            ({**ok, "snapshot_schedule": {"frequency": "yearly", "time": "02:00", "duration": "7d"}},
             "snapshot_schedule"),
            ({**ok, "snapshot_schedule": {"frequency": "daily", "time": "24:00", "duration": "7d"}},
             "snapshot_schedule"),
            ({**ok, "snapshot_schedule": {"frequency": "daily", "time": "2:00", "duration": "7d"}},
             "snapshot_schedule"),
            ({**ok, "snapshot_schedule": {"frequency": "daily", "time": "02:00", "duration": "7 days"}},
             "snapshot_schedule"),
            ({**ok, "snapshot_schedule": {"frequency": "daily", "time": "02:00", "duration": "0d"}},
             "snapshot_schedule"),
            ({**ok, "snapshot_schedule": {"frequency": "daily", "time": "02:00", "duration": "4000d"}},
             "snapshot_schedule"),
            ({**ok, "snapshot_schedule": {"frequency": "daily", "time": "02:00", "duration": "12h"}},
             "snapshot_schedule"),
            ({**ok, "snapshot_schedule": {"frequency": "daily", "time": "02:00"}}, "snapshot_schedule"),
        ]


# --- creation, representation and the agent's CREATE_SPACE orders ----------------------------------

def test_create_places_the_space_on_each_site_and_orders_each_agent(admin):
    paris, london = SiteFactory(name="paris"), SiteFactory(name="london")
    pool = StoragePoolFactory(filesystem=FilesystemFactory(site=paris), name="fast")
    response = create(admin, name="projects", mountpoint="//mmfs1//projects/", size=10 * 2**40,
                      permission_mode="chmodOnly", color=[10, 20, 30],
                      sites=[{"name": "paris", "pool": "fast"}, "london"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["mountpoint"] == "/mmfs1/projects"
    assert body["is_ready"] is False
    assert body["on_sites"] == {"london": {"ready": False, "pool": None}, "paris": {"ready": False, "pool": "fast"}}
    assert body["sites"] == [
        {"id": london.pk, "name": "london", "label": london.label, "pool": None, "usage": [0, 10 * 2**40]},
        {"id": paris.pk, "name": "paris", "label": paris.label, "pool": "fast", "usage": [0, 10 * 2**40]},
    ]
    assert body["url"].endswith(f"/api/spaces/{body['id']}/")
    assert body["editable"] is True and body["immutable"] is False
    assert "allow_nested" not in body
    space = Space.objects.get(pk=body["id"])
    assert SpaceSite.objects.get(space=space, site=paris).pool == pool
    (order,) = tasks(paris)
    assert order.request == {"space": "projects", "mountpoint": "/mmfs1/projects", "size": 10 * 2**40,
                             "pool": "fast", "permission_mode": "chmodOnly"}
    assert order.state == SettingsTask.State.PENDING and order.created_by.username == "admin-persona"
    (order,) = tasks(london)
    assert order.request["pool"] is None


def test_space_becomes_ready_when_every_site_reports_success(admin):
    paris, london = SiteFactory(), SiteFactory()
    space_id = create(admin, name="p", mountpoint="/mmfs1/p", sites=[paris.name, london.name]).json()["id"]
    space = Space.objects.get(pk=space_id)
    play_agent(tasks(paris)[0])
    body = admin.get(detail(space)).json()
    assert body["on_sites"][paris.name]["ready"] is True
    assert body["on_sites"][london.name]["ready"] is False
    assert body["is_ready"] is False
    play_agent(tasks(london)[0])
    assert admin.get(detail(space)).json()["is_ready"] is True


def test_failed_creation_leaves_the_placement_not_ready(admin):
    site = SiteFactory()
    space_id = create(admin, name="p", mountpoint="/mmfs1/p", sites=[site.name]).json()["id"]
    play_agent(tasks(site)[0], state="FAILURE")
    assert SpaceSite.objects.get(space_id=space_id).ready is False
    assert admin.get(reverse("space-detail", args=[space_id])).json()["is_ready"] is False


def test_readiness_hook_follows_the_mountpoint_even_after_a_rename(admin):
    site = SiteFactory()
    space_id = create(admin, name="before", mountpoint="/mmfs1/p", sites=[site.name]).json()["id"]
    assert admin.patch(reverse("space-detail", args=[space_id]), {"name": "after"}, format="json").status_code == 200
    play_agent(tasks(site)[0])
    assert SpaceSite.objects.get(space_id=space_id).ready is True


def test_no_order_is_sent_when_creation_is_refused(admin):
    site = SiteFactory()
    SpaceFactory(sites=[site], mountpoint="/mmfs1/taken")
    response = create(admin, name="p", mountpoint="/mmfs1/taken", sites=[site.name])
    assert response.status_code == 400
    assert tasks(site) == []


# --- mountpoint rules ------------------------------------------------------------------------------

def test_same_mountpoint_on_one_site_is_refused_but_allowed_on_another_site(admin):
    paris, london = SiteFactory(), SiteFactory()
    SpaceFactory(name="first", sites=[paris], mountpoint="/mmfs1/data")
    refused = create(admin, name="second", mountpoint="/mmfs1/data/", sites=[paris.name, london.name])
    assert refused.status_code == 400
    assert "first" in str(refused.json()["mountpoint"]) and paris.name in str(refused.json()["mountpoint"])
    assert create(admin, name="second", mountpoint="/mmfs1/data", sites=[london.name]).status_code == 201


def test_same_mountpoint_is_refused_even_with_allow_nested(admin):
    site = SiteFactory()
    SpaceFactory(sites=[site], mountpoint="/mmfs1/data")
    response = create(admin, name="again", mountpoint="/mmfs1/data", sites=[site.name], allow_nested=True)
    assert response.status_code == 400 and "mountpoint" in response.json()


@pytest.mark.parametrize("existing, new", [("/mmfs1/data", "/mmfs1/data/team"), ("/mmfs1/data/team", "/mmfs1/data")])
def test_nested_space_on_a_shared_site_needs_allow_nested(admin, existing, new):
    site = SiteFactory()
    SpaceFactory(name="existing", sites=[site], mountpoint=existing)
    refused = create(admin, name="new", mountpoint=new, sites=[site.name])
    assert refused.status_code == 400
    message = str(refused.json()["mountpoint"])
    assert "existing" in message and "allow_nested" in message
    allowed = create(admin, name="new", mountpoint=new, sites=[site.name], allow_nested=True)
    assert allowed.status_code == 201, allowed.content


def test_prefix_that_is_not_a_parent_directory_is_not_nesting(admin):
    site = SiteFactory()
    SpaceFactory(sites=[site], mountpoint="/mmfs1/data")
    assert create(admin, name="new", mountpoint="/mmfs1/database", sites=[site.name]).status_code == 201


def test_nesting_across_different_sites_is_not_nesting(admin):
    paris, london = SiteFactory(), SiteFactory()
    SpaceFactory(sites=[paris], mountpoint="/mmfs1/data")
    assert create(admin, name="new", mountpoint="/mmfs1/data/team", sites=[london.name]).status_code == 201


def test_mountpoint_cannot_change_after_creation(admin):
    space = SpaceFactory(sites=[SiteFactory()], mountpoint="/mmfs1/data")
    response = admin.patch(detail(space), {"mountpoint": "/mmfs1/other"}, format="json")
    assert response.status_code == 400
    assert "cannot be changed after the space is created" in str(response.json()["mountpoint"])
    same = admin.patch(detail(space), {"mountpoint": "/mmfs1//data/", "name": "still-here"}, format="json")
    assert same.status_code == 200, same.content
    space.refresh_from_db()
    assert space.mountpoint == "/mmfs1/data" and space.name == "still-here"


# --- pools -----------------------------------------------------------------------------------------

def test_pool_must_belong_to_the_site(admin):
    paris, london = SiteFactory(), SiteFactory()
    StoragePoolFactory(filesystem=FilesystemFactory(site=london), name="london-pool")
    response = create(admin, name="p", mountpoint="/mmfs1/p", sites=[{"name": paris.name, "pool": "london-pool"}])
    assert response.status_code == 400
    assert "not a storage pool of site" in str(response.json()["sites"])
    assert not Space.objects.exists()


def test_ambiguous_pool_name_asks_for_the_filesystem(admin):
    site = SiteFactory()
    first = StoragePoolFactory(filesystem=FilesystemFactory(site=site, name="gpfs1"), name="system")
    StoragePoolFactory(filesystem=FilesystemFactory(site=site, name="gpfs2"), name="system")
    ambiguous = create(admin, name="p", mountpoint="/mmfs1/p", sites=[{"name": site.name, "pool": "system"}])
    assert ambiguous.status_code == 400 and "ambiguous" in str(ambiguous.json()["sites"])
    by_path = create(admin, name="p", mountpoint="/mmfs1/p", sites=[{"name": site.name, "pool": "gpfs1/system"}])
    assert by_path.status_code == 201, by_path.content
    assert SpaceSite.objects.get(space_id=by_path.json()["id"]).pool == first


def test_a_read_representation_of_sites_can_be_sent_back(admin):
    site = SiteFactory()
    StoragePoolFactory(filesystem=FilesystemFactory(site=site), name="fast")
    body = create(admin, name="p", mountpoint="/mmfs1/p", sites=[{"name": site.name, "pool": "fast"}]).json()
    response = admin.patch(reverse("space-detail", args=[body["id"]]), {"sites": body["sites"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["sites"] == body["sites"]
    assert len(tasks(site)) == 1  # nothing changed: no new order


# --- immutable -------------------------------------------------------------------------------------

def test_immutable_space_can_be_neither_changed_nor_deleted(admin):
    site = SiteFactory()
    body = create(admin, name="default", mountpoint="/mmfs1/default", sites=[site.name], immutable=True).json()
    assert body["immutable"] is True and body["editable"] is False
    url = reverse("space-detail", args=[body["id"]])
    changed = admin.patch(url, {"name": "renamed"}, format="json")
    assert changed.status_code == 409 and "immutable" in changed.json()["detail"]
    deleted = admin.delete(url)
    assert deleted.status_code == 409 and "immutable" in deleted.json()["detail"]
    assert Space.objects.get(pk=body["id"]).name == "default"


def test_immutable_can_only_be_set_at_creation(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    response = admin.patch(detail(space), {"immutable": True}, format="json")
    assert response.status_code == 400
    assert "only be set when the space is created" in str(response.json()["immutable"])
    space.refresh_from_db()
    assert space.immutable is False


# --- size, colour, quota changes -------------------------------------------------------------------

def test_zero_or_null_size_means_unlimited_for_the_agent(admin):
    site = SiteFactory()
    assert create(admin, name="p", mountpoint="/mmfs1/p", sites=[site.name], size=0).status_code == 201
    assert tasks(site)[0].request["size"] is None


def test_new_quota_is_sent_again_to_the_sites_that_have_the_space(admin):
    site = SiteFactory()
    space = SpaceFactory(sites=[site])
    response = admin.patch(detail(space), {"size": 2**30, "color": [1, 2, 3, 4]}, format="json")
    assert response.status_code == 200
    assert response.json()["color"] == [1, 2, 3, 4]
    (order,) = tasks(site)
    assert order.request["size"] == 2**30 and order.friendly_name.startswith("Update space")
    assert SpaceSite.objects.get(space=space).ready is True  # the space stays usable meanwhile
    admin.patch(detail(space), {"name": "renamed"}, format="json")
    assert len(tasks(site)) == 1  # a rename changes nothing on the site


def test_empty_colour_means_no_colour(admin):
    response = create(admin, name="p", mountpoint="/mmfs1/p", sites=[SiteFactory().name], color=[])
    assert response.status_code == 201 and response.json()["color"] == []


# --- snapshot schedules ----------------------------------------------------------------------------

def test_snapshot_schedule_is_created_replaced_patched_and_removed(admin):
    site = SiteFactory()
    body = create(admin, name="p", mountpoint="/mmfs1/p", sites=[site.name],
                  snapshot_schedule={"frequency": "daily", "time": "02:30", "duration": "7d"}).json()
    schedule = body["snapshot_schedule"]
    assert {k: schedule[k] for k in ("frequency", "time", "duration", "space")} == {
        "frequency": "daily", "time": "02:30", "duration": "7d", "space": body["id"]}
    url = reverse("space-detail", args=[body["id"]])
    replaced = admin.patch(url, {"snapshot_schedule": {"frequency": "weekly", "time": "23:59", "duration": "4w"}},
                           format="json")
    assert replaced.status_code == 200
    assert replaced.json()["snapshot_schedule"]["frequency"] == "weekly"
    partly = admin.patch(url, {"snapshot_schedule": {"time": "01:00"}}, format="json")
    assert partly.status_code == 200, partly.content
    assert {k: partly.json()["snapshot_schedule"][k] for k in ("frequency", "time", "duration")} == {
        "frequency": "weekly", "time": "01:00", "duration": "4w"}
    assert SnapshotSchedule.objects.count() == 1
    removed = admin.patch(url, {"snapshot_schedule": None}, format="json")
    assert removed.status_code == 200 and removed.json()["snapshot_schedule"] is None
    assert not SnapshotSchedule.objects.exists()


def test_partial_schedule_is_refused_when_the_space_has_none(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    response = admin.patch(detail(space), {"snapshot_schedule": {"time": "01:00"}}, format="json")
    assert response.status_code == 400
    assert set(response.json()["snapshot_schedule"]) == {"frequency", "duration"}


@pytest.mark.parametrize("frequency, duration, ok", [
    ("hourly", "1h", True), ("hourly", "24h", True), ("daily", "23h", False), ("daily", "1d", True),
    ("weekly", "6d", False), ("weekly", "1w", True), ("monthly", "4w", True), ("monthly", "3w", False),
    ("monthly", "12m", True), ("daily", "10y", True), ("daily", "11y", False), ("daily", "121m", False),
])
def test_retention_must_outlive_the_interval_and_stay_within_ten_years(admin, frequency, duration, ok):
    space = SpaceFactory(sites=[SiteFactory()])
    schedule = {"frequency": frequency, "time": "00:00", "duration": duration}
    response = admin.patch(detail(space), {"snapshot_schedule": schedule}, format="json")
    assert response.status_code == (200 if ok else 400), response.content


# --- changing sites --------------------------------------------------------------------------------

def test_adding_a_site_orders_only_that_site_and_removing_one_keeps_its_data(admin):
    paris, london, tokyo = SiteFactory(), SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris, london])
    response = admin.patch(detail(space), {"sites": [paris.name, tokyo.name]}, format="json")
    assert response.status_code == 200, response.content
    assert sorted(response.json()["on_sites"]) == sorted([paris.name, tokyo.name])
    assert tasks(paris) == [] and tasks(london) == []
    (order,) = tasks(tokyo)
    assert order.request["mountpoint"] == space.mountpoint
    assert set(space.sites.all()) == {paris, tokyo}
    assert response.json()["on_sites"][tokyo.name]["ready"] is False


def test_removing_a_site_withdraws_the_spaces_shares_there(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris, london])
    nfs_share(space)
    assert admin.patch(detail(space), {"sites": [paris.name]}, format="json").status_code == 200
    (withdraw,) = tasks(london, SettingsTask.TaskType.APPLY_SHARES)
    assert withdraw.request["nfs"] == [] and withdraw.request["smb"] == []
    assert tasks(paris, SettingsTask.TaskType.APPLY_SHARES) == []


def test_adding_a_site_pushes_the_existing_shares_to_it(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris])
    share = nfs_share(space)
    assert admin.patch(detail(space), {"sites": [paris.name, london.name]}, format="json").status_code == 200
    (push,) = tasks(london, SettingsTask.TaskType.APPLY_SHARES)
    assert [item["uuid"] for item in push.request["nfs"]] == [str(share.uuid)]


def test_site_named_by_an_smb_share_cannot_leave_the_space(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris, london])
    SmbShare.objects.create(space=space, name="lab", path=space.mountpoint, on_sites=[london.name])
    response = admin.patch(detail(space), {"sites": [paris.name]}, format="json")
    assert response.status_code == 409 and "lab" in response.json()["detail"]
    assert set(space.sites.all()) == {paris, london}


def test_site_where_a_target_is_available_cannot_leave_the_space(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris, london])
    ExternalTargetFactory(name="archive", space=space, available_on_sites=[london])
    response = admin.patch(detail(space), {"sites": [paris.name]}, format="json")
    assert response.status_code == 409 and "archive" in response.json()["detail"]


def test_a_space_keeps_at_least_one_site(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    response = admin.patch(detail(space), {"sites": []}, format="json")
    assert response.status_code == 400 and "sites" in response.json()


def test_adding_a_site_checks_the_mountpoint_there(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris], mountpoint="/mmfs1/data/team")
    SpaceFactory(name="outer", sites=[london], mountpoint="/mmfs1/data")
    refused = admin.patch(detail(space), {"sites": [paris.name, london.name]}, format="json")
    assert refused.status_code == 400 and "outer" in str(refused.json()["sites"])
    allowed = admin.patch(detail(space), {"sites": [paris.name, london.name], "allow_nested": True}, format="json")
    assert allowed.status_code == 200, allowed.content


def test_pool_of_an_existing_placement_cannot_change(admin):
    site = SiteFactory()
    fs = FilesystemFactory(site=site)
    StoragePoolFactory(filesystem=fs, name="fast")
    StoragePoolFactory(filesystem=fs, name="slow")
    space_id = create(admin, name="p", mountpoint="/mmfs1/p", sites=[{"name": site.name, "pool": "fast"}]).json()["id"]
    response = admin.patch(reverse("space-detail", args=[space_id]), {"sites": [{"name": site.name, "pool": "slow"}]},
                           format="json")
    assert response.status_code == 400 and "cannot be changed" in str(response.json()["sites"])
    kept = admin.patch(reverse("space-detail", args=[space_id]), {"sites": [site.name]}, format="json")
    assert kept.status_code == 200 and kept.json()["on_sites"][site.name]["pool"] == "fast"


def test_space_admin_cannot_extend_the_space_to_a_site_they_do_not_administer(member, member_user):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris])
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_space", member_user, space)
    permissions.grant("sites.view_site", member_user, london)
    response = member.patch(detail(space), {"sites": [paris.name, london.name]}, format="json")
    assert response.status_code == 403 and london.name in response.json()["detail"]
    assert tasks(london) == []
    permissions.grant("sites.change_site", member_user, london)
    assert member.patch(detail(space), {"sites": [paris.name, london.name]}, format="json").status_code == 200


def test_sites_the_caller_cannot_see_are_unknown(member, member_user):
    space = SpaceFactory(sites=[SiteFactory()])
    hidden = SiteFactory()
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_space", member_user, space)
    response = member.patch(detail(space), {"sites": [hidden.name]}, format="json")
    assert response.status_code == 400 and "No site named" in str(response.json()["sites"])


# --- deletion --------------------------------------------------------------------------------------

def test_space_used_by_external_targets_cannot_be_deleted(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    ExternalTargetFactory(name="to-s3", space=space)
    ExternalTargetFactory(name="to-azure", space=space)
    response = admin.delete(detail(space))
    assert response.status_code == 409
    assert "to-azure" in response.json()["detail"] and "to-s3" in response.json()["detail"]
    assert Space.objects.filter(pk=space.pk).exists()


def test_deleting_a_space_removes_its_shares_and_withdraws_them_from_its_sites(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris, london])
    nfs_share(space)
    SmbShare.objects.create(space=space, name="lab", path=space.mountpoint)
    assert admin.delete(detail(space)).status_code == 204
    assert not NfsShare.objects.exists() and not SmbShare.objects.exists() and not SpaceSite.objects.exists()
    for site in (paris, london):
        (withdraw,) = tasks(site, SettingsTask.TaskType.APPLY_SHARES)
        assert withdraw.request["nfs"] == [] and withdraw.request["smb"] == []
        assert tasks(site) == []  # no order to delete data


def test_deleting_a_space_forgets_the_grants_on_it(admin, member_user):
    space = SpaceFactory(sites=[SiteFactory()])
    share = nfs_share(space)
    permissions.grant("sites.view_space", member_user, space)
    permissions.grant("sites.change_nfsshare", member_user, share)
    assert len(permissions.permissions_of(member_user)["user_object_permissions"]) == 2
    assert admin.delete(detail(space)).status_code == 204
    assert permissions.permissions_of(member_user)["user_object_permissions"] == []


# --- relationships, nested shares ------------------------------------------------------------------

def test_relationships_and_nested_shares_follow_the_tree_on_shared_sites(admin):
    site, elsewhere = SiteFactory(), SiteFactory()
    outer = SpaceFactory(name="outer", sites=[site], mountpoint="/mmfs1/data")
    inner = SpaceFactory(name="inner", sites=[site], mountpoint="/mmfs1/data/team")
    deepest = SpaceFactory(name="deepest", sites=[site], mountpoint="/mmfs1/data/team/x")
    SpaceFactory(name="sibling", sites=[site], mountpoint="/mmfs1/database")
    SpaceFactory(name="other-site", sites=[elsewhere], mountpoint="/mmfs1/data/remote")
    own = nfs_share(outer, "/mmfs1/data/public")
    nested = SmbShare.objects.create(space=inner, name="team", path="/mmfs1/data/team/docs")

    body = admin.get(detail(outer)).json()
    assert body["relationships"] == {
        "parents": [],
        "children": [{"id": inner.pk, "name": "inner", "mountpoint": "/mmfs1/data/team"},
                     {"id": deepest.pk, "name": "deepest", "mountpoint": "/mmfs1/data/team/x"}],
    }
    assert body["nested_shares"] == [
        {"type": "nfs", "id": own.pk, "name": "", "path": "/mmfs1/data/public", "space": outer.pk},
        {"type": "smb", "id": nested.pk, "name": "team", "path": "/mmfs1/data/team/docs", "space": inner.pk},
    ]
    inner_body = admin.get(detail(inner)).json()
    assert [p["name"] for p in inner_body["relationships"]["parents"]] == ["outer"]
    assert [c["name"] for c in inner_body["relationships"]["children"]] == ["deepest"]
    assert [s["id"] for s in inner_body["nested_shares"]] == [nested.pk]
    listed = {item["name"]: item for item in admin.get(reverse(LIST)).json()["results"]}
    assert listed["outer"]["relationships"] == body["relationships"]
    assert listed["deepest"]["relationships"]["parents"][0]["name"] == "outer"
    assert listed["sibling"]["relationships"] == {"parents": [], "children": []}


def test_relationships_show_only_spaces_the_caller_may_see(member, member_user):
    site = SiteFactory()
    outer = SpaceFactory(name="outer", sites=[site], mountpoint="/mmfs1/data")
    SpaceFactory(name="secret", sites=[site], mountpoint="/mmfs1/data/secret")
    permissions.grant("sites.view_space", member_user, outer)
    assert member.get(detail(outer)).json()["relationships"]["children"] == []


# --- listing, filters, permissions -----------------------------------------------------------------

def test_filters_by_site_and_keyword(admin):
    paris, london = SiteFactory(), SiteFactory()
    SpaceFactory(name="Projects", sites=[paris], mountpoint="/mmfs1/proj")
    SpaceFactory(name="home", sites=[paris, london], mountpoint="/mmfs1/HOMEDIRS")
    SpaceFactory(name="scratch", sites=[london], mountpoint="/scratch")

    def names(**params):
        response = admin.get(reverse(LIST), params)
        assert response.status_code == 200
        return sorted(item["name"] for item in response.json()["results"])

    assert names(site_id=paris.pk) == ["Projects", "home"]
    assert names(site_id=london.pk) == ["home", "scratch"]
    assert names(search_keyword="PROJ") == ["Projects"]
    assert names(search_keyword="homedirs") == ["home"]
    assert names(search_keyword="mmfs1", site_id=london.pk) == ["home"]
    assert admin.get(reverse(LIST), {"search_keyword": "a\x00b"}).status_code in (200, 400)
    assert admin.get(reverse(LIST), {"site_id": "abc"}).status_code == 400


def test_group_granted_view_on_a_space_sees_it_and_nothing_else(member, member_user):
    group = GroupFactory()
    member_user.groups.add(group)
    visible = SpaceFactory(sites=[SiteFactory()])
    SpaceFactory(sites=[SiteFactory()])
    permissions.grant("sites.view_space", group, visible)
    listed = [item["id"] for item in member.get(reverse(LIST)).json()["results"]]
    assert listed == [visible.pk]
    body = member.get(detail(visible)).json()
    assert body["editable"] is False
    assert member.patch(detail(visible), {"name": "x"}, format="json").status_code == 403


def test_group_granted_change_on_a_space_administers_it(member, member_user):
    group = GroupFactory()
    member_user.groups.add(group)
    space = SpaceFactory(sites=[SiteFactory()])
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_space", group, space)
    assert member.get(detail(space)).json()["editable"] is True
    response = member.patch(detail(space), {"size": 2**40, "color": [255, 0, 0]}, format="json")
    assert response.status_code == 200
    assert member.delete(detail(space)).status_code == 403


def test_viewers_of_a_site_see_its_spaces(member, member_user):
    site = SiteFactory()
    space = SpaceFactory(sites=[site])
    SpaceFactory(sites=[SiteFactory()])
    permissions.grant("sites.view_site", member_user, site)
    assert [item["id"] for item in member.get(reverse(LIST)).json()["results"]] == [space.pk]


def test_members_of_the_users_group_see_every_space(db):
    SpaceFactory(sites=[SiteFactory()])
    SpaceFactory(sites=[SiteFactory()])
    reader = UserFactory(groups=[Group.objects.get(name=settings.HUB_USERS_GROUP)])
    client = api_client(reader)
    assert client.get(reverse(LIST)).json()["count"] == 2
    assert client.post(reverse(LIST), {"name": "x", "mountpoint": "/x", "sites": []}, format="json").status_code == 403


def test_listing_costs_the_same_number_of_queries_for_3_or_30_spaces(member, member_user):
    site = SiteFactory()
    permissions.grant("sites.view_site", member_user, site)

    def make(count: int, offset: int) -> None:
        for index in range(count):
            space = SpaceFactory(sites=[site], mountpoint=f"/mmfs1/s{offset + index}")
            nfs_share(space)
            SnapshotSchedule.objects.create(space=space, frequency="daily", time="01:00", duration="7d")

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert member.get(reverse(LIST), {"page_size": 100}).status_code == 200
        return len(queries)

    make(3, 0)
    few = count()
    make(27, 100)
    assert count() == few


def test_page_size_zero_streams_every_space_with_its_links(admin):
    site = SiteFactory()
    outer = SpaceFactory(sites=[site], mountpoint="/mmfs1/a")
    SpaceFactory(sites=[site], mountpoint="/mmfs1/a/b")
    for index in range(25):
        SpaceFactory(sites=[site], mountpoint=f"/mmfs1/z{index}")
    response = admin.get(reverse(LIST), {"page_size": 0})
    body = json.loads(b"".join(response.streaming_content))
    assert body["count"] == 27 and len(body["results"]) == 27
    by_id = {item["id"]: item for item in body["results"]}
    assert [c["mountpoint"] for c in by_id[outer.pk]["relationships"]["children"]] == ["/mmfs1/a/b"]


def test_hostile_lookups_are_404(admin):
    for value in ("abc", "9" * 30, "-1"):
        assert admin.get(reverse(LIST) + f"{value}/").status_code == 404


def test_hostile_bodies_never_cause_a_500(admin):
    site = SiteFactory()
    space = SpaceFactory(sites=[site])
    bodies = [[], [1], "x", 0, None, {"sites": [None]}, {"sites": [{"name": None}]}, {"sites": [{"name": 1}]},
              {"sites": [{"name": site.name, "pool": True}]}, {"sites": [{"name": site.name, "pool": ["a"]}]},
              {"sites": [{"name": site.name, "pool": 2**80}]}, {"snapshot_schedule": "daily"},
              {"snapshot_schedule": {"frequency": None}}, {"color": "red"}, {"size": "big"},
              {"name": "\x00", "mountpoint": "\x00", "sites": ["\x00"]}, {"allow_nested": "maybe"}]
    for body in bodies:
        for method, url in (("POST", reverse(LIST)), ("PATCH", detail(space))):
            response = admin.generic(method, url, json.dumps(body), content_type="application/json")
            assert response.status_code < 500, (method, body, response.content)


def test_mountpoints_differing_only_in_case_are_different_directories(admin):
    site = SiteFactory()
    SpaceFactory(sites=[site], mountpoint="/mmfs1/data")
    response = create(admin, name="upper", mountpoint="/mmfs1/DATA/team", sites=[site.name])
    assert response.status_code == 201, response.content


def test_space_names_are_unique(admin):
    site = SiteFactory()
    SpaceFactory(name="projects", sites=[site])
    response = create(admin, name="projects", mountpoint="/mmfs1/other", sites=[site.name])
    assert response.status_code == 400 and "already exists" in str(response.json()["name"])
