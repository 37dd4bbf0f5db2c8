"""The agent's inventory report (sites.services.inventory.apply_inventory) and what the API shows."""

from __future__ import annotations

import copy
import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sites.models import Fileset, Filesystem, Server, SettingsTask, Site, SpaceSite, StoragePool
from sites.services.inventory import apply_inventory
from sites.services.site_tasks import send_site_task
from tests.factories import SiteFactory, SpaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def report(site: str = "lab", **overrides) -> dict:
    """A complete report: two filesystems, three pools, two filesets, two servers, counts."""
    body = {
        "site": site,
        "node": "nsd1",
        "filesystems": [
            {"name": "gpfs1", "mountpoint": "/mmfs1", "fstype": "gpfs", "capacity": 1000, "used_space": 400,
             "free_space": 600},
            {"name": "gpfs2", "mountpoint": "/mmfs2", "fstype": "gpfs", "capacity": 500, "used_space": 100,
             "free_space": 400},
        ],
        "pools": [
            {"filesystem": "gpfs1", "name": "system", "capacity": 100, "used_space": 40, "free_space": 60,
             "is_default": True},
            {"filesystem": "gpfs1", "name": "data", "capacity": 900, "used_space": 360, "free_space": 540},
            {"filesystem": "gpfs2", "name": "system", "capacity": 500, "used_space": 100, "free_space": 400,
             "is_default": True},
        ],
        "filesets": [
            {"filesystem": "gpfs1", "name": "root", "path": "/mmfs1", "status": "Linked"},
            {"filesystem": "gpfs1", "name": "projects", "path": "/mmfs1/projects", "status": "Linked",
             "block_quota": 2**40, "block_usage": 2**30, "files_quota": 10**6, "files_usage": 42},
        ],
        "servers": [
            {"name": "nsd1", "list_of_interfaces": [{"name": "ib0", "addresses": ["10.0.0.1"], "speed": 100000}]},
            {"name": "nsd2"},
        ],
        "servers_scope": "cluster",
        "counts": {"files_count": 1234, "directories_count": 56, "files_hydrated_count": 7,
                   "files_stubbed_count": 8},
    }
    body.update(overrides)
    return body


def ids(model) -> dict[str, int]:
    return {str(obj): obj.pk for obj in model.objects.select_related("site", *(
        ["filesystem"] if model in (StoragePool, Fileset) else []))}


def snapshot() -> dict:
    """Every inventory row with every column, to compare whole states."""
    return {model.__name__: sorted(model.objects.values_list(), key=repr)
            for model in (Filesystem, StoragePool, Fileset, Server)}


@pytest.fixture
def site():
    return SiteFactory(name="lab")


def test_a_first_report_creates_the_sites_inventory_and_counts(site):
    apply_inventory(report())
    assert sorted(Filesystem.objects.values_list("name", "mountpoint", "fstype", "capacity")) == [
        ("gpfs1", "/mmfs1", "gpfs", 1000), ("gpfs2", "/mmfs2", "gpfs", 500)]
    assert sorted(StoragePool.objects.values_list("filesystem__name", "name", "is_default", "site__name")) == [
        ("gpfs1", "data", False, "lab"), ("gpfs1", "system", True, "lab"), ("gpfs2", "system", True, "lab")]
    projects = Fileset.objects.get(name="projects")
    assert (projects.path, projects.block_quota, projects.files_usage, projects.site) == (
        "/mmfs1/projects", 2**40, 42, site)
    assert Server.objects.get(name="nsd1").list_of_interfaces[0]["name"] == "ib0"
    assert Server.objects.get(name="nsd2").list_of_interfaces == []
    site.refresh_from_db()
    assert (site.files_count, site.directories_count, site.files_hydrated_count, site.files_stubbed_count) == (
        1234, 56, 7, 8)
    assert site.inventory_updated is not None


def test_a_new_report_updates_rows_in_place_keeping_their_ids(site):
    apply_inventory(report())
    before = {name: ids(model) for name, model in (("fs", Filesystem), ("pools", StoragePool),
                                                   ("filesets", Fileset), ("servers", Server))}
    changed = report()
    changed["filesystems"][0]["used_space"] = 999
    changed["pools"][1]["free_space"] = 1
    changed["filesets"][1]["files_usage"] = 43
    changed["servers"][1]["list_of_interfaces"] = [{"name": "eth0"}]
    apply_inventory(changed)
    after = {name: ids(model) for name, model in (("fs", Filesystem), ("pools", StoragePool),
                                                  ("filesets", Fileset), ("servers", Server))}
    assert after == before
    assert Filesystem.objects.get(name="gpfs1").used_space == 999
    assert StoragePool.objects.get(filesystem__name="gpfs1", name="data").free_space == 1
    assert Fileset.objects.get(name="projects").files_usage == 43
    assert Server.objects.get(name="nsd2").list_of_interfaces == [{"name": "eth0"}]


def test_rows_the_agent_no_longer_reports_are_removed(site):
    apply_inventory(report())
    smaller = report()
    smaller["filesystems"] = smaller["filesystems"][:1]  # gpfs2 gone: its pool goes with it
    smaller["pools"] = [smaller["pools"][0]]  # "data" gone
    smaller["filesets"] = [smaller["filesets"][0]]
    smaller["servers"] = []
    kept_pool = StoragePool.objects.get(filesystem__name="gpfs1", name="system").pk
    apply_inventory(smaller)
    assert list(Filesystem.objects.values_list("name", flat=True)) == ["gpfs1"]
    assert list(StoragePool.objects.values_list("pk", flat=True)) == [kept_pool]
    assert list(Fileset.objects.values_list("name", flat=True)) == ["root"]
    assert not Server.objects.exists()


def test_nodes_reporting_only_themselves_do_not_erase_each_other(site):
    apply_inventory(report(node="nsd1", servers=[{"name": "nsd1"}], servers_scope="node"))
    apply_inventory(report(node="nsd2", servers=[{"name": "nsd2"}], servers_scope="node"))
    assert sorted(Server.objects.values_list("name", flat=True)) == ["nsd1", "nsd2"]
    # A node that stops reporting itself is removed; the other stays.
    apply_inventory(report(node="nsd2", servers=[], servers_scope="node"))
    assert list(Server.objects.values_list("name", flat=True)) == ["nsd1"]


def test_a_space_whose_pool_vanished_keeps_its_placement_without_a_pool(site):
    apply_inventory(report())
    space = SpaceFactory(sites=[site])
    placement = SpaceSite.objects.get(space=space)
    placement.pool = StoragePool.objects.get(filesystem__name="gpfs1", name="data")
    placement.save()
    smaller = report()
    smaller["pools"] = [pool for pool in smaller["pools"] if pool["name"] != "data"]
    apply_inventory(smaller)
    placement.refresh_from_db()
    assert placement.pool is None


def test_pools_and_filesets_on_unknown_filesystems_are_ignored(site, caplog):
    body = report()
    body["pools"].append({"filesystem": "nofs", "name": "ghost", "capacity": 1, "used_space": 0, "free_space": 1})
    body["filesets"].append({"filesystem": "nofs", "name": "ghost", "path": "/nowhere"})
    with caplog.at_level(logging.WARNING, logger="sites.services.inventory"):
        apply_inventory(body)
    assert not StoragePool.objects.filter(name="ghost").exists()
    assert not Fileset.objects.filter(name="ghost").exists()
    assert StoragePool.objects.count() == 3 and Fileset.objects.count() == 2
    assert "ghost" in caplog.text


def test_applying_the_same_report_twice_changes_nothing(site):
    apply_inventory(report())
    first = snapshot()
    with CaptureQueriesContext(connection) as queries:
        apply_inventory(report())
    assert snapshot() == first
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].lstrip().upper().startswith(("INSERT", "DELETE"))
              or (q["sql"].lstrip().upper().startswith("UPDATE") and "sites_site" not in q["sql"])]
    assert writes == []


def test_the_same_names_on_another_site_are_other_rows(site):
    SiteFactory(name="remote")
    apply_inventory(report())
    apply_inventory(report(site="remote", servers=[]))
    assert Filesystem.objects.filter(name="gpfs1").count() == 2
    assert Server.objects.filter(site__name="lab").count() == 2
    assert not Server.objects.filter(site__name="remote").exists()


def test_a_section_missing_from_the_report_is_left_as_it_is(site):
    apply_inventory(report())
    before = snapshot()
    partial = report()
    for key in ("filesystems", "pools", "filesets", "servers"):
        del partial[key]
    apply_inventory(partial)
    assert snapshot() == before
    pools_only = report(pools=[{"filesystem": "gpfs2", "name": "system", "capacity": 1, "used_space": 0,
                                "free_space": 1}])
    del pools_only["filesystems"]
    apply_inventory(pools_only)  # pools still resolve against the stored filesystems
    assert list(StoragePool.objects.values_list("filesystem__name", "name")) == [("gpfs2", "system")]
    assert Filesystem.objects.count() == 2


def test_malformed_items_are_skipped_and_the_rest_applies(site, caplog):
    body = report()
    body["filesystems"] += [None, "gpfs9", {"mountpoint": "/x"}, {"name": "", "mountpoint": "/x"},
                            {"name": "a\x00b", "mountpoint": "/x"}, {"name": "x" * 300, "mountpoint": "/x"},
                            {"name": "longpath", "mountpoint": "/" + "p" * 5000}, {"name": True, "mountpoint": "/"}]
    body["pools"] += [{"filesystem": "gpfs1"}, 7]
    body["filesets"] += [{"filesystem": "gpfs1", "name": "nul", "path": "/a\x00b"}]
    body["servers"] += [{"name": "nsd3", "list_of_interfaces": "eth0"},
                        {"name": "nsd4", "list_of_interfaces": [{"name": "a\x00"}]}, {"name": None}]
    with caplog.at_level(logging.WARNING, logger="sites.services.inventory"):
        apply_inventory(body)
    assert sorted(Filesystem.objects.values_list("name", flat=True)) == ["gpfs1", "gpfs2"]
    assert StoragePool.objects.count() == 3 and Fileset.objects.count() == 2
    assert Server.objects.get(name="nsd3").list_of_interfaces == []
    assert Server.objects.get(name="nsd4").list_of_interfaces == []
    assert "skipped" in caplog.text


def test_numbers_are_clamped_to_what_the_columns_hold(site):
    body = report(counts={"files_count": 2**80, "directories_count": -5, "files_hydrated_count": "many"})
    body["filesystems"][0].update(capacity=2**70, used_space=-1, free_space="12")
    body["filesets"][0]["status"] = "S" * 80
    apply_inventory(body)
    fs = Filesystem.objects.get(name="gpfs1")
    assert (fs.capacity, fs.used_space, fs.free_space) == (2**63 - 1, 0, 12)
    site.refresh_from_db()
    assert (site.files_count, site.directories_count, site.files_hydrated_count) == (2**63 - 1, 0, 0)
    assert Fileset.objects.get(name="root").status == "S" * 50


def test_counts_not_in_the_report_are_left_alone(site):
    apply_inventory(report())
    apply_inventory(report(counts={"files_count": 1}))
    site.refresh_from_db()
    assert (site.files_count, site.directories_count) == (1, 56)
    apply_inventory(report(counts="garbage"))
    site.refresh_from_db()
    assert site.files_count == 1


def test_space_usage_is_recorded_on_the_placement(site):
    space = SpaceFactory(sites=[site], mountpoint="/mmfs1/projects")
    apply_inventory(report(spaces=[{"mountpoint": "/mmfs1/projects", "used_space": 2048, "used_files": 3},
                                   {"mountpoint": None}, "junk"]))
    placement = SpaceSite.objects.get(space=space, site=site)
    assert (placement.used_space, placement.used_files) == (2048, 3)


def test_a_report_answering_a_refresh_order_finishes_its_task_with_a_summary(site):
    task = send_site_task(site, SettingsTask.TaskType.INVENTORY, {})
    apply_inventory(report(task_id=str(task.task_id)))
    task.refresh_from_db()
    assert task.state == SettingsTask.State.SUCCESS
    assert task.results == {"filesystems": 2, "pools": 3, "filesets": 2, "servers": 2}


def test_a_report_from_an_unknown_site_is_refused_and_writes_nothing():
    with pytest.raises(Site.DoesNotExist):
        apply_inventory(report(site="ghost"))
    assert not Filesystem.objects.exists()


def test_the_reported_inventory_is_what_the_api_shows(site, admin):
    body = report()
    apply_inventory(copy.deepcopy(body))
    pools = admin.get(reverse("storagepool-list"), {"site": "lab", "is_default": "true"}).json()["results"]
    assert sorted((pool["filesystem"], pool["name"]) for pool in pools) == [("gpfs1", "system"), ("gpfs2", "system")]
    filesets = admin.get(reverse("fileset-list"), {"site": "lab"}).json()
    assert [row["name"] for row in filesets] == ["projects", "root"]
    filesystems = admin.get(reverse("filesystem-list"), {"site": site.pk}).json()["results"]
    assert {fs["name"]: fs["site"] for fs in filesystems} == {"gpfs1": "lab", "gpfs2": "lab"}
