"""NFS exports and SMB shares: validation of every value that reaches a site, pushes, permissions."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hub import permissions
from sites.models import NfsClient, NfsShare, SettingsTask, SmbShare, Space
from tests.api.matrix import PermissionMatrix
from tests.factories import GroupFactory, SiteFactory, SpaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

NFS, SMB = "nfsshare", "smbshare"


def url(basename: str, obj=None) -> str:
    return reverse(f"{basename}-detail", args=[obj.pk]) if obj is not None else reverse(f"{basename}-list")


def make_nfs(space: Space, path: str | None = None, hosts: str = "*", **fields) -> NfsShare:
    share = NfsShare.objects.create(space=space, path=path or space.mountpoint, **fields)
    NfsClient.objects.create(nfs_share=share, hosts=hosts)
    return share


def make_smb(space: Space, name: str, **fields) -> SmbShare:
    return SmbShare.objects.create(space=space, name=name, path=fields.pop("path", space.mountpoint), **fields)


def pushes(site) -> list[SettingsTask]:
    return list(SettingsTask.objects.filter(site=site, tasktype=SettingsTask.TaskType.APPLY_SHARES).order_by("id"))


def nfs_payload(space: Space, **fields) -> dict:
    return {"space": space.pk, "clients": [{"hosts": "10.0.0.0/24"}], **fields}


def smb_payload(space: Space, **fields) -> dict:
    return {"space": space.pk, "name": "lab", **fields}


class _SharesMatrix(PermissionMatrix):
    """The share lists are plain JSON lists, not pages."""

    def listed_ids(self, response):
        assert response.status_code == 200, response.content
        assert isinstance(response.json(), list)
        return {item["id"] for item in response.json()}

    def _space(self) -> Space:
        if not hasattr(self, "space"):
            self.space = SpaceFactory(sites=[SiteFactory()])
        return self.space


class TestNfsSharePermissions(_SharesMatrix):
    basename = NFS
    update_field = "name"

    def make_target(self):
        return make_nfs(SpaceFactory(sites=[SiteFactory()]), name="theirs")

    def create_payload(self):
        return nfs_payload(self._space(), name="new-export")

    def update_payload(self):
        return {"name": "renamed-export"}

    def bad_payloads(self):
        space = self._space()
        ok = nfs_payload(space)
        return [
            ({}, "space"),
            ({"clients": [{"hosts": "*"}]}, "space"),
            ({**ok, "space": 10**9}, "space"),
            ({"space": space.pk}, "clients"),
            ({**ok, "clients": []}, "clients"),
            ({**ok, "clients": [{"hosts": "bad host"}]}, "clients"),
            ({**ok, "clients": [{"hosts": "*", "advanced_settings": {"no_root_squash": True}}]}, "clients"),
            ({**ok, "clients": [{"hosts": "*", "anonymous_user_id": -1}]}, "clients"),
            ({**ok, "path": "/elsewhere"}, "path"),
            ({**ok, "path": f"{space.mountpoint}/../x"}, "path"),
            ({**ok, "path": "relative"}, "path"),
            ({**ok, "fsid": 0}, "fsid"),
            ({**ok, "fsid": -5}, "fsid"),
            ({**ok, "name": "a\nb"}, "name"),
        ]


class TestSmbSharePermissions(_SharesMatrix):
    basename = SMB
    update_field = "name"

    def make_target(self):
        return make_smb(SpaceFactory(sites=[SiteFactory()]), "theirs")

    def create_payload(self):
        return smb_payload(self._space(), name="new-share")

    def update_payload(self):
        return {"name": "renamed-share"}

    def bad_payloads(self):
        space = self._space()
        ok = smb_payload(space)
        return [
            ({}, "name"),
            ({"name": "x"}, "space"),
            ({**ok, "name": ""}, "name"),
            ({**ok, "name": "a/b"}, "name"),
            ({**ok, "name": "global"}, "name"),
            ({**ok, "name": "x" * 81}, "name"),
            ({**ok, "create_mask": "999"}, "create_mask"),
            ({**ok, "directory_mask": "07555"}, "directory_mask"),
            ({**ok, "force_create_mode": "rwx"}, "force_create_mode"),
            ({**ok, "force_directory_mode": "12"}, "force_directory_mode"),
            ({**ok, "hosts_allow": ["10.0.0.0/33"]}, "hosts_allow"),
            ({**ok, "hosts_deny": ["a b"]}, "hosts_deny"),
            ({**ok, "admin_users": ["bad,user"]}, "admin_users"),
            ({**ok, "allowed_users": ["\"quoted\""]}, "allowed_users"),
            ({**ok, "on_sites": ["not-a-site-of-the-space"]}, "on_sites"),
            ({**ok, "advanced_settings": {"vfs objects": "fruit"}}, "advanced_settings"),
            ({**ok, "path": "/elsewhere"}, "path"),
        ]


# --- lists ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("basename", [NFS, SMB])
def test_lists_are_plain_lists_filtered_by_space(admin, basename):
    first, second = SpaceFactory(sites=[SiteFactory()]), SpaceFactory(sites=[SiteFactory()])
    make = (lambda space, n: make_nfs(space, f"{space.mountpoint}/{n}")) if basename == NFS else (
        lambda space, n: make_smb(space, f"{space.name}-{n}"))
    mine = {make(first, "a").pk, make(first, "b").pk}
    make(second, "c")
    everything = admin.get(url(basename))
    assert isinstance(everything.json(), list) and len(everything.json()) == 3
    filtered = admin.get(url(basename), {"space": first.pk})
    assert {item["id"] for item in filtered.json()} == mine
    assert admin.get(url(basename), {"space": "x"}).status_code == 400


def test_nfs_list_costs_the_same_number_of_queries_for_2_or_20_shares(admin):
    space = SpaceFactory(sites=[SiteFactory()])

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin.get(url(NFS)).status_code == 200
        return len(queries)

    for index in range(2):
        make_nfs(space, f"{space.mountpoint}/{index}")
    few = count()
    for index in range(2, 20):
        make_nfs(space, f"{space.mountpoint}/{index}")
    assert count() == few


# --- NFS ---------------------------------------------------------------------------------------------

def test_nfs_share_representation_and_default_path(admin):
    space = SpaceFactory(sites=[SiteFactory()], mountpoint="/mmfs1/proj")
    response = admin.post(url(NFS), nfs_payload(space, name="proj", fsid=17), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["path"] == "/mmfs1/proj" and body["space"] == space.pk and body["fsid"] == 17
    (client,) = body["clients"]
    assert client["nfs_share"] == body["id"] and client["hosts"] == "10.0.0.0/24"
    assert client["read_only"] is True and client["force_root_user_id"] is True  # safe defaults
    assert set(client) == {"id", "uuid", "nfs_share", "hosts", "read_only", "subtree_check", "asynchronous",
                           "write_delay", "insecure_ports", "force_root_user_id", "force_all_user_id",
                           "anonymous_user_id", "anonymous_group_id", "advanced_settings"}


def test_share_path_is_normalised_and_must_stay_inside_the_space(admin):
    space = SpaceFactory(sites=[SiteFactory()], mountpoint="/mmfs1/proj")
    ok = admin.post(url(NFS), nfs_payload(space, path="/mmfs1//proj/sub/"), format="json")
    assert ok.status_code == 201 and ok.json()["path"] == "/mmfs1/proj/sub"
    for path in ("/mmfs1/project", "/mmfs1", "/mmfs1/proj/../other", "/mmfs1/proj/./x", "proj/sub"):
        response = admin.post(url(NFS), nfs_payload(space, path=path), format="json")
        assert response.status_code == 400 and "path" in response.json(), path
    outside = admin.post(url(SMB), smb_payload(space, path="/mmfs1/elsewhere"), format="json")
    assert outside.status_code == 400 and "outside space" in str(outside.json()["path"])


@pytest.mark.parametrize("hosts", [
    "*", "10.1.2.3", "10.1.0.0/16", "10.1.0.0/255.255.0.0", "2001:db8::1", "2001:db8::/32", "client1",
    "node01.example.org", "*.example.org", "node??.example.org", "@trusted-hosts",
])
def test_valid_nfs_client_specifications_are_accepted(admin, hosts):
    space = SpaceFactory(sites=[SiteFactory()])
    response = admin.post(url(NFS), nfs_payload(space, clients=[{"hosts": hosts}]), format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("hosts", [
    "", " ", "10.0.0.0/33", "300.1.1.1/8", "host name", "a,b", "host(rw)", "-host.example.org",
    "*.example.*", "@", "exa_mple.org", "a" * 64 + ".org", "10.0.0.1\nrw", "host;reboot",
])
def test_invalid_nfs_client_specifications_are_refused(admin, hosts):
    space = SpaceFactory(sites=[SiteFactory()])
    response = admin.post(url(NFS), nfs_payload(space, clients=[{"hosts": hosts}]), format="json")
    assert response.status_code == 400 and "clients" in response.json(), hosts
    assert not NfsShare.objects.exists()


def test_nfs_export_options_are_checked_against_the_safe_list(admin):
    space = SpaceFactory(sites=[SiteFactory()])

    def post(options):
        return admin.post(url(NFS), nfs_payload(space, clients=[{"hosts": "*", "advanced_settings": options}]),
                          format="json")

    ok = post({"sec": "krb5p:krb5i", "crossmnt": True, "nohide": False})
    assert ok.status_code == 201, ok.content
    assert ok.json()["clients"][0]["advanced_settings"] == {"sec": "krb5p:krb5i", "crossmnt": True, "nohide": False}
    unknown = post({"mountpoint": "/etc"})
    assert unknown.status_code == 400
    assert "'mountpoint' is not in the list of safe NFS export options" in str(unknown.json())
    field = post({"no_root_squash": True})
    assert "force_root_user_id" in str(field.json())
    for options in ({"sec": "none"}, {"sec": "sys:sys"}, {"crossmnt": "yes"}, {"pnfs": True, "no_pnfs": True},
                    {"crossmnt\n": True}, ["crossmnt"], {"xprtsec": "ssl"}):
        assert post(options).status_code == 400, options


def test_anonymous_ids_are_bounded(admin):
    space = SpaceFactory(sites=[SiteFactory()])

    def post(**ids):
        return admin.post(url(NFS), nfs_payload(space, clients=[{"hosts": "*", **ids}]), format="json")

    assert post(anonymous_user_id=0, anonymous_group_id=2**32 - 2).status_code == 201
    assert NfsShare.objects.get().clients.get().anonymous_group_id == 2**32 - 2
    NfsShare.objects.all().delete()
    for ids in ({"anonymous_user_id": -1}, {"anonymous_group_id": 2**32 - 1}, {"anonymous_group_id": 2**32},
                {"anonymous_user_id": "root"}):
        assert post(**ids).status_code == 400, ids


def test_one_client_per_host_specification(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    response = admin.post(url(NFS), nfs_payload(space, clients=[{"hosts": "*"}, {"hosts": "*", "read_only": False}]),
                          format="json")
    assert response.status_code == 400 and "more than one client" in str(response.json()["clients"])


def test_patch_with_clients_replaces_the_client_list_and_keeps_at_least_one(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    share = make_nfs(space, hosts="old.example.org")
    response = admin.patch(url(NFS, share), {"clients": [{"hosts": "a.example.org"}, {"hosts": "b.example.org",
                                                                                        "read_only": False}]},
                           format="json")
    assert response.status_code == 200, response.content
    assert sorted(c["hosts"] for c in response.json()["clients"]) == ["a.example.org", "b.example.org"]
    assert list(share.clients.order_by("hosts").values_list("hosts", flat=True)) == ["a.example.org", "b.example.org"]
    assert admin.patch(url(NFS, share), {"clients": []}, format="json").status_code == 400
    assert share.clients.count() == 2
    renamed = admin.patch(url(NFS, share), {"name": "kept-clients"}, format="json")
    assert renamed.status_code == 200 and len(renamed.json()["clients"]) == 2


def test_fsid_is_unique(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    make_nfs(space, f"{space.mountpoint}/a", fsid=7)
    response = admin.post(url(NFS), nfs_payload(space, path=f"{space.mountpoint}/b", fsid=7), format="json")
    assert response.status_code == 400 and "fsid" in response.json()


def test_a_path_is_exported_once_per_site_even_across_nested_spaces(admin):
    site = SiteFactory()
    outer = SpaceFactory(sites=[site], mountpoint="/mmfs1/data")
    inner = SpaceFactory(sites=[site], mountpoint="/mmfs1/data/team")
    make_nfs(outer, "/mmfs1/data/team")
    response = admin.post(url(NFS), nfs_payload(inner), format="json")
    assert response.status_code == 400 and "already exported" in str(response.json()["path"])
    again = admin.post(url(NFS), nfs_payload(outer, path="/mmfs1/data/team"), format="json")
    assert again.status_code == 400


def test_a_share_cannot_move_to_another_space(admin):
    space, other = SpaceFactory(sites=[SiteFactory()]), SpaceFactory(sites=[SiteFactory()])
    share = make_nfs(space)
    response = admin.patch(url(NFS, share), {"space": other.pk}, format="json")
    assert response.status_code == 400 and "cannot move" in str(response.json()["space"])
    smb = make_smb(space, "lab")
    assert admin.patch(url(SMB, smb), {"space": other.pk}, format="json").status_code == 400


# --- pushes to sites ---------------------------------------------------------------------------------

def test_every_nfs_change_pushes_the_complete_share_set_to_each_site(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris, london], mountpoint="/mmfs1/proj")
    existing = make_nfs(space, "/mmfs1/proj/old")
    created = admin.post(url(NFS), nfs_payload(space, path="/mmfs1/proj/new", clients=[
        {"hosts": "10.0.0.0/24", "read_only": False, "anonymous_user_id": 1000,
         "advanced_settings": {"sec": "krb5p", "crossmnt": True}}]), format="json").json()
    for site in (paris, london):
        (push,) = pushes(site)
        order = push.request
        assert order["space"] == space.name and order["mountpoint"] == "/mmfs1/proj"
        assert order["space_uuid"] == str(space.uuid)
        assert [item["path"] for item in order["nfs"]] == ["/mmfs1/proj/new", "/mmfs1/proj/old"]
        assert order["nfs"][0]["clients"][0]["options"] == (
            "rw,sync,wdelay,secure,root_squash,no_all_squash,no_subtree_check,anonuid=1000,crossmnt,sec=krb5p")
        assert order["smb"] == []
    admin.patch(url(NFS, existing), {"name": "renamed"}, format="json")
    assert [item["name"] for item in pushes(paris)[-1].request["nfs"]] == ["", "renamed"]
    admin.delete(reverse("nfsshare-detail", args=[created["id"]]))
    assert [item["path"] for item in pushes(london)[-1].request["nfs"]] == ["/mmfs1/proj/old"]
    assert len(pushes(paris)) == len(pushes(london)) == 3


def test_smb_share_is_pushed_only_to_the_sites_it_is_published_on(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris, london])
    response = admin.post(url(SMB), smb_payload(space, on_sites=[london.name, london.name]), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["on_sites"] == [london.name]
    assert pushes(paris)[-1].request["smb"] == []
    assert [share["name"] for share in pushes(london)[-1].request["smb"]] == ["lab"]
    admin.patch(url(SMB, SmbShare.objects.get()), {"on_sites": []}, format="json")
    assert [share["name"] for share in pushes(paris)[-1].request["smb"]] == ["lab"]


def test_refused_change_pushes_nothing(admin):
    site = SiteFactory()
    space = SpaceFactory(sites=[site])
    assert admin.post(url(SMB), smb_payload(space, name="bad/name"), format="json").status_code == 400
    assert pushes(site) == []


# --- SMB ---------------------------------------------------------------------------------------------

def test_smb_share_representation(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    response = admin.post(url(SMB), smb_payload(space, create_mask="644", hosts_allow=["10.0.0.", "ALL"],
                                                 admin_users=["DOMAIN\\Domain Admins", "@staff"]), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"admin_users", "advanced_settings", "allowed_users", "create_mask", "directory_mask",
                         "force_create_mode", "force_directory_mode", "guest_ok", "hosts_allow", "hosts_deny",
                         "hsm_support", "id", "multi_thread_reads", "multi_thread_writes", "name", "on_sites", "path",
                         "read_only", "root_share_locking", "space", "uuid", "visible"}
    assert body["create_mask"] == "0644" and body["directory_mask"] == "0755"
    assert body["hosts_allow"] == ["10.0.0.", "ALL"] and body["path"] == space.mountpoint
    assert body["admin_users"] == ["DOMAIN\\Domain Admins", "@staff"]


@pytest.mark.parametrize("name, ok", [
    ("Lab Data", True), ("lab$", True), ("x" * 80, True), ("x" * 81, False), ("", False), (" lab", False),
    ("GLOBAL", False), ("Homes", False), ("printers", False), ("IPC$", False), ("a\\b", False), ("a:b", False),
    ("a|b", False), ("a<b", False), ("a>b", False), ("a+b", False), ("a=b", False), ("a;b", False), ("a,b", False),
    ("a*b", False), ("a?b", False), ('a"b', False), ("a[b]", False), ("a\nb", False), ("a\tb", False),
])
def test_smb_share_names(admin, name, ok):
    space = SpaceFactory(sites=[SiteFactory()])
    response = admin.post(url(SMB), smb_payload(space, name=name), format="json")
    assert response.status_code == (201 if ok else 400), (name, response.content)
    if not ok:
        assert "name" in response.json()


def test_smb_share_names_are_unique_ignoring_case(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    share = make_smb(space, "Lab")
    response = admin.post(url(SMB), smb_payload(space, name="LAB"), format="json")
    assert response.status_code == 400 and "already exists" in str(response.json()["name"])
    assert admin.patch(url(SMB, share), {"name": "lab"}, format="json").status_code == 200


@pytest.mark.parametrize("field", ["create_mask", "directory_mask", "force_create_mode", "force_directory_mode"])
def test_smb_modes_are_three_or_four_octal_digits(admin, field):
    space = SpaceFactory(sites=[SiteFactory()])
    share = make_smb(space, "lab")
    for value, expected in (("755", "0755"), ("2775", "2775"), ("0000", "0000")):
        response = admin.patch(url(SMB, share), {field: value}, format="json")
        assert response.status_code == 200 and response.json()[field] == expected
    for value in ("78", "0789", "12345", "rwx", "", "-755", True, ["0755"]):
        assert admin.patch(url(SMB, share), {field: value}, format="json").status_code == 400, value


@pytest.mark.parametrize("hosts, ok", [
    (["10.0.0.1"], True), (["10.0.0.0/8"], True), (["150.203.5."], True), (["fe80::/10"], True),
    ([".example.org"], True), (["*.example.org"], True), (["@netgroup"], True), (["all"], True),
    (["host.example.org", "10.0.0.1"], True), (["EXCEPT"], False), (["except"], False),
    (["10.0.0.1 10.0.0.2"], False), (["10.0.0.0/99"], False), (["bad_host"], False), (["a\nb"], False),
    (["..example.org"], False), ("10.0.0.1", False), ([None], False),
])
def test_smb_host_lists(admin, hosts, ok):
    space = SpaceFactory(sites=[SiteFactory()])
    for field in ("hosts_allow", "hosts_deny"):
        SmbShare.objects.all().delete()
        response = admin.post(url(SMB), smb_payload(space, **{field: hosts}), format="json")
        assert response.status_code == (201 if ok else 400), (field, hosts, response.content)


def test_smb_advanced_settings_are_checked_against_the_safe_list(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    share = make_smb(space, "lab")

    def patch(options):
        return admin.patch(url(SMB, share), {"advanced_settings": options}, format="json")

    ok = patch({"Hide Dot Files": True, "vetofiles": "/*.tmp/", "strict locking": "Auto", "max connections": "10",
                "comment": "Lab data"})
    assert ok.status_code == 200, ok.content
    assert ok.json()["advanced_settings"] == {"hide dot files": "yes", "veto files": "/*.tmp/",
                                              "strict locking": "auto", "max connections": 10, "comment": "Lab data"}
    for option in ("vfs objects", "root preexec", "wide links", "force user", "include", "magic script"):
        response = patch({option: "x"})
        assert response.status_code == 400
        assert f"'{option}' is not in the list of safe SMB options" in str(response.json()["advanced_settings"])
    assert "guest_ok" in str(patch({"guest ok": "yes"}).json()["advanced_settings"])
    for options in ({"comment": "a\n[global]\nroot preexec = rm -rf /"}, {"oplocks": "perhaps"},
                    {"max connections": -1}, {"comment": ["x"]}, {"oplocks": True, "OPLOCKS": False}, ["comment"],
                    {"read list": "alice, b\"ob"}):
        assert patch(options).status_code == 400, options
    share.refresh_from_db()
    assert share.advanced_settings["comment"] == "Lab data"


def test_smb_on_sites_must_name_sites_of_the_space(admin):
    paris, london = SiteFactory(), SiteFactory()
    space = SpaceFactory(sites=[paris])
    response = admin.post(url(SMB), smb_payload(space, on_sites=[london.name]), format="json")
    assert response.status_code == 400 and london.name in str(response.json()["on_sites"])


# --- permissions through the space -------------------------------------------------------------------

@pytest.mark.parametrize("basename", [NFS, SMB])
def test_group_granted_view_on_a_space_sees_its_shares_but_cannot_change_them(member, member_user, basename):
    group = GroupFactory()
    member_user.groups.add(group)
    space, hidden = SpaceFactory(sites=[SiteFactory()]), SpaceFactory(sites=[SiteFactory()])
    permissions.grant("sites.view_space", group, space)
    share = make_nfs(space) if basename == NFS else make_smb(space, "visible")
    make_nfs(hidden) if basename == NFS else make_smb(hidden, "hidden")
    assert [item["id"] for item in member.get(url(basename)).json()] == [share.pk]
    assert member.get(url(basename, share)).status_code == 200
    assert member.patch(url(basename, share), {"name": "x"}, format="json").status_code == 403
    assert member.delete(url(basename, share)).status_code == 403
    payload = nfs_payload(space, path=f"{space.mountpoint}/new") if basename == NFS else smb_payload(space)
    assert member.post(url(basename), payload, format="json").status_code == 403


@pytest.mark.parametrize("basename", [NFS, SMB])
def test_group_granted_change_on_a_space_manages_its_shares_but_not_another_spaces(member, member_user, basename):
    group = GroupFactory()
    member_user.groups.add(group)
    space, other = SpaceFactory(sites=[SiteFactory()]), SpaceFactory(sites=[SiteFactory()])
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_space", group, space)

    def payload(target: Space, name: str) -> dict:
        return nfs_payload(target, name=name) if basename == NFS else smb_payload(target, name=name)

    created = member.post(url(basename), payload(space, "mine"), format="json")
    assert created.status_code == 201, created.content
    refused = member.post(url(basename), payload(other, "theirs"), format="json")
    assert refused.status_code == 403
    model = NfsShare if basename == NFS else SmbShare
    assert list(model.objects.values_list("space_id", flat=True)) == [space.pk]
    share = model.objects.get()
    assert member.patch(url(basename, share), {"name": "renamed"}, format="json").status_code == 200


def test_hostile_bodies_never_cause_a_500(admin):
    space = SpaceFactory(sites=[SiteFactory()])
    nfs, smb = make_nfs(space), make_smb(space, "lab")
    bodies = [[], "x", None, {"space": None}, {"space": "abc"}, {"space": 2**80}, {"clients": "x"},
              {"clients": [None]}, {"clients": [{"hosts": None}]},
              {"clients": [{"hosts": "*", "advanced_settings": 1}]},
              {"clients": [{"hosts": "*", "anonymous_user_id": 2**80}]}, {"fsid": 2**80}, {"path": None},
              {"path": "\x00"}, {"name": {"a": 1}}, {"on_sites": [None]}, {"hosts_allow": [{"a": 1}]},
              {"advanced_settings": {"\x00": "x"}}, {"advanced_settings": {"comment": "\x00"}}]
    for body in bodies:
        for method, target in (("POST", url(NFS)), ("PATCH", url(NFS, nfs)), ("POST", url(SMB)),
                               ("PATCH", url(SMB, smb))):
            data = body if not isinstance(body, dict) else {**({"space": space.pk} if method == "POST" else {}),
                                                            **body}
            response = admin.generic(method, target, json.dumps(data), content_type="application/json")
            assert response.status_code < 500, (method, target, body, response.content)
