"""Read-only inventory: servers, storage pools, filesystems and filesets.

Personas: anonymous 401; an outsider sees nothing (empty lists, 404); a member granted ``view``
on a *site* sees that site's inventory and nothing of another site's; nobody writes (405).
"""

from __future__ import annotations

import json

import factory
import pytest
from django.urls import reverse

from hub import permissions
from sites.models import Fileset, Filesystem, Server, StoragePool
from tests.factories import FilesystemFactory, SiteFactory, StoragePoolFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


class ServerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Server

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"nsd{n}")
    list_of_interfaces = factory.LazyFunction(
        lambda: [{"name": "eth0", "addresses": ["10.0.0.1"], "speed": 10000}]
    )


class FilesetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Fileset

    filesystem = factory.SubFactory(FilesystemFactory)
    site = factory.LazyAttribute(lambda fileset: fileset.filesystem.site)
    name = factory.Sequence(lambda n: f"fileset{n}")
    path = factory.LazyAttribute(lambda fileset: f"{fileset.filesystem.mountpoint}/{fileset.name}")
    status = "Linked"
    block_quota = 2**40
    block_usage = 2**30
    files_quota = 1_000_000
    files_usage = 1234


# basename -> a builder of one row on a given site
BUILDERS = {
    "server": lambda site: ServerFactory(site=site),
    "storagepool": lambda site: StoragePoolFactory(filesystem=FilesystemFactory(site=site)),
    "filesystem": lambda site: FilesystemFactory(site=site),
}
MODELS = {"server": Server, "storagepool": StoragePool, "filesystem": Filesystem}


def ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {item["id"] for item in response.json()["results"]}


@pytest.fixture
def two_sites():
    return SiteFactory(name="mine"), SiteFactory(name="theirs")


# --- personas -------------------------------------------------------------------------------------


@pytest.mark.parametrize("basename", BUILDERS)
def test_anonymous_gets_401_on_inventory(anon, basename):
    row = BUILDERS[basename](SiteFactory())
    assert anon.get(reverse(f"{basename}-list")).status_code == 401
    assert anon.get(reverse(f"{basename}-detail", args=[row.pk])).status_code == 401
    assert anon.post(reverse(f"{basename}-list"), {}, format="json").status_code == 401
    assert anon.delete(reverse(f"{basename}-detail", args=[row.pk])).status_code == 401


@pytest.mark.parametrize("basename", BUILDERS)
def test_outsider_sees_no_inventory_and_gets_404(outsider, basename):
    row = BUILDERS[basename](SiteFactory())
    assert ids(outsider.get(reverse(f"{basename}-list"))) == set()
    assert outsider.get(reverse(f"{basename}-detail", args=[row.pk])).status_code == 404


@pytest.mark.parametrize("basename", BUILDERS)
def test_member_with_view_on_a_site_sees_its_inventory_and_not_another_sites(
    member, member_user, two_sites, basename
):
    mine, theirs = two_sites
    visible, hidden = BUILDERS[basename](mine), BUILDERS[basename](theirs)
    permissions.grant("sites.view_site", member_user, mine)
    assert ids(member.get(reverse(f"{basename}-list"))) == {visible.pk}
    assert member.get(reverse(f"{basename}-detail", args=[visible.pk])).status_code == 200
    assert member.get(reverse(f"{basename}-detail", args=[hidden.pk])).status_code == 404


@pytest.mark.parametrize("basename", BUILDERS)
def test_admin_sees_every_sites_inventory(admin, two_sites, basename):
    rows = {BUILDERS[basename](site).pk for site in two_sites}
    assert ids(admin.get(reverse(f"{basename}-list"))) == rows


@pytest.mark.parametrize("basename", BUILDERS)
def test_inventory_is_read_only_even_for_the_admin(admin, member, member_user, basename):
    site = SiteFactory()
    row = BUILDERS[basename](site)
    permissions.grant("sites.change_site", member_user, site)
    for client in (admin, member):
        assert client.post(reverse(f"{basename}-list"), {"name": "x"}, format="json").status_code == 405
        detail = reverse(f"{basename}-detail", args=[row.pk])
        assert client.patch(detail, {"name": "x"}, format="json").status_code == 405
        assert client.put(detail, {"name": "x"}, format="json").status_code == 405
        assert client.delete(detail).status_code == 405
    row.refresh_from_db()
    assert row.name != "x" and MODELS[basename].objects.filter(pk=row.pk).exists()


# --- reference shapes -----------------------------------------------------------------------------


def test_server_answers_the_reference_fields_with_site_as_id(admin):
    server = ServerFactory()
    body = admin.get(reverse("server-detail", args=[server.pk])).json()
    assert body["id"] == server.pk
    assert body["name"] == server.name
    assert body["site"] == server.site_id
    assert body["list_of_interfaces"] == [{"name": "eth0", "addresses": ["10.0.0.1"], "speed": 10000}]
    assert body["url"].endswith(reverse("server-detail", args=[server.pk]))
    assert body["site_name"] == server.site.name


def test_storage_pool_answers_filesystem_by_name_and_site_by_id(admin):
    pool = StoragePoolFactory(is_default=True, capacity=100, used_space=40, free_space=60)
    body = admin.get(reverse("storagepool-detail", args=[pool.pk])).json()
    assert {key: body[key] for key in ("id", "name", "filesystem", "site", "capacity", "used_space", "free_space",
                                       "is_default")} == {
        "id": pool.pk, "name": pool.name, "filesystem": pool.filesystem.name, "site": pool.site_id,
        "capacity": 100, "used_space": 40, "free_space": 60, "is_default": True,
    }
    assert body["filesystem_id"] == pool.filesystem_id


def test_filesystem_answers_site_by_name_plus_its_capacity(admin):
    fs = FilesystemFactory(fstype="gpfs")
    body = admin.get(reverse("filesystem-detail", args=[fs.pk])).json()
    assert body["site"] == fs.site.name and body["site_id"] == fs.site_id
    assert body["name"] == fs.name and body["mountpoint"] == fs.mountpoint
    assert (body["fstype"], body["capacity"], body["used_space"], body["free_space"]) == (
        "gpfs", fs.capacity, fs.used_space, fs.free_space
    )


def test_inventory_lists_follow_the_reference_pagination(admin):
    site = SiteFactory()
    for _ in range(25):
        ServerFactory(site=site)
    first = admin.get(reverse("server-list")).json()
    assert first["count"] == 25 and len(first["results"]) == 20 and first["next"]
    everything = admin.get(reverse("server-list"), {"page_size": 0})
    assert everything.status_code == 200
    body = json.loads(b"".join(everything.streaming_content))
    assert body["count"] == 25 and len(body["results"]) == 25


# --- filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize("basename", BUILDERS)
def test_site_filter_accepts_a_name_or_an_id(admin, two_sites, basename):
    mine, theirs = two_sites
    row = BUILDERS[basename](mine)
    BUILDERS[basename](theirs)
    url = reverse(f"{basename}-list")
    assert ids(admin.get(url, {"site": "mine"})) == {row.pk}
    assert ids(admin.get(url, {"site": str(mine.pk)})) == {row.pk}
    assert ids(admin.get(url, {"site_id": mine.pk})) == {row.pk}
    assert ids(admin.get(url, {"site": "nowhere"})) == set()


def test_site_filter_prefers_a_site_named_like_another_sites_id(admin):
    numbered = SiteFactory()
    named = SiteFactory(name=str(numbered.pk))
    on_numbered, on_named = ServerFactory(site=numbered), ServerFactory(site=named)
    assert ids(admin.get(reverse("server-list"), {"site": str(numbered.pk)})) == {on_named.pk}
    assert on_numbered.pk not in ids(admin.get(reverse("server-list"), {"site": named.name}))


def test_site_filter_does_not_reveal_a_site_the_member_cannot_view(member, member_user, two_sites):
    mine, theirs = two_sites
    ServerFactory(site=theirs)
    permissions.grant("sites.view_site", member_user, mine)
    assert ids(member.get(reverse("server-list"), {"site": "theirs"})) == set()


def test_pools_filter_by_filesystem_name_or_id_and_by_default(admin):
    site = SiteFactory()
    gpfs1, gpfs2 = FilesystemFactory(site=site, name="gpfs1"), FilesystemFactory(site=site, name="gpfs2")
    system = StoragePoolFactory(filesystem=gpfs1, name="system", is_default=True)
    data = StoragePoolFactory(filesystem=gpfs1, name="data")
    other = StoragePoolFactory(filesystem=gpfs2, name="system2")
    url = reverse("storagepool-list")
    assert ids(admin.get(url, {"filesystem": "gpfs1"})) == {system.pk, data.pk}
    assert ids(admin.get(url, {"filesystem": str(gpfs2.pk)})) == {other.pk}
    assert ids(admin.get(url, {"is_default": "true"})) == {system.pk}
    assert ids(admin.get(url, {"is_default": "false"})) == {data.pk, other.pk}
    assert ids(admin.get(url, {"filesystem": "gpfs1", "is_default": "false", "site": site.name})) == {data.pk}


def test_filesystem_filter_is_per_site_when_names_repeat(admin, two_sites):
    mine, theirs = two_sites
    here = StoragePoolFactory(filesystem=FilesystemFactory(site=mine, name="gpfs1"))
    there = StoragePoolFactory(filesystem=FilesystemFactory(site=theirs, name="gpfs1"))
    url = reverse("storagepool-list")
    assert ids(admin.get(url, {"filesystem": "gpfs1"})) == {here.pk, there.pk}
    assert ids(admin.get(url, {"filesystem": "gpfs1", "site": "theirs"})) == {there.pk}


@pytest.mark.parametrize("params", [{"site_id": "abc"}, {"site_id": "1.5"}, {"site_id": str(2**80)},
                                    {"site": "x" * 101}, {"site": "a\x00b"}])
def test_bad_filter_values_are_a_400_not_a_500(admin, params):
    ServerFactory()
    response = admin.get(reverse("server-list"), params)
    assert response.status_code == 400, response.content


def test_huge_numeric_site_value_is_treated_as_a_name(admin):
    ServerFactory()
    assert ids(admin.get(reverse("server-list"), {"site": "9" * 40})) == set()


# --- filesets -------------------------------------------------------------------------------------


def test_filesets_of_a_named_site_are_a_plain_list_with_the_reference_fields(admin):
    site = SiteFactory(name="lab")
    fs = FilesystemFactory(site=site, name="gpfs1", mountpoint="/mmfs1")
    fileset = FilesetFactory(filesystem=fs, name="projects", status="Linked")
    FilesetFactory()  # another site's
    response = admin.get(reverse("fileset-list"), {"site": "lab"})
    assert response.status_code == 200
    assert response.json() == [{
        "id": fileset.pk, "name": "projects", "filesystem": "gpfs1", "path": "/mmfs1/projects", "status": "Linked",
        "block_quota": 2**40, "block_usage": 2**30, "files_quota": 1_000_000, "files_usage": 1234,
    }]


def test_filesets_are_ordered_by_filesystem_then_name(admin):
    site = SiteFactory(name="lab")
    fs_b, fs_a = FilesystemFactory(site=site, name="b"), FilesystemFactory(site=site, name="a")
    FilesetFactory(filesystem=fs_b, name="x")
    FilesetFactory(filesystem=fs_a, name="z")
    FilesetFactory(filesystem=fs_a, name="y")
    body = admin.get(reverse("fileset-list"), {"site": "lab"}).json()
    assert [(row["filesystem"], row["name"]) for row in body] == [("a", "y"), ("a", "z"), ("b", "x")]


def test_filesets_without_a_site_is_a_400_naming_site(admin):
    for params in ({}, {"site": ""}, {"site": "a\x00b"}):
        response = admin.get(reverse("fileset-list"), params)
        assert response.status_code == 400, params
        assert "site" in response.json()


def test_filesets_of_an_unknown_site_is_a_404(admin):
    assert admin.get(reverse("fileset-list"), {"site": "nowhere"}).status_code == 404


def test_filesets_of_a_site_the_caller_cannot_view_is_a_404(member, member_user, outsider, two_sites):
    mine, theirs = two_sites
    mine_fileset = FilesetFactory(filesystem=FilesystemFactory(site=mine))
    FilesetFactory(filesystem=FilesystemFactory(site=theirs))
    permissions.grant("sites.view_site", member_user, mine)
    assert [row["id"] for row in member.get(reverse("fileset-list"), {"site": "mine"}).json()] == [mine_fileset.pk]
    assert member.get(reverse("fileset-list"), {"site": "theirs"}).status_code == 404
    assert outsider.get(reverse("fileset-list"), {"site": "mine"}).status_code == 404


def test_filesets_accept_a_site_id_too(admin):
    fileset = FilesetFactory()
    body = admin.get(reverse("fileset-list"), {"site": str(fileset.site_id)}).json()
    assert [row["id"] for row in body] == [fileset.pk]


def test_filesets_need_a_signed_in_caller(anon):
    FilesetFactory(filesystem=FilesystemFactory(site=SiteFactory(name="lab")))
    assert anon.get(reverse("fileset-list"), {"site": "lab"}).status_code == 401


def test_filesets_of_a_site_without_any_is_an_empty_list(admin):
    SiteFactory(name="empty")
    response = admin.get(reverse("fileset-list"), {"site": "empty"})
    assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize("basename", BUILDERS)
def test_hostile_lookups_are_404_not_500(admin, basename):
    for value in ("%00", "abc", "9" * 30, "-1", "1e5"):
        response = admin.get(reverse(f"{basename}-detail", args=["placeholder"]).replace("placeholder", value))
        assert response.status_code == 404, (value, response.status_code)
