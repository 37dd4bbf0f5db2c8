"""Data stores (credentials encrypted, masked, kept), their IP addresses, and site links."""

from __future__ import annotations

import base64
import json

import pytest
from django.db import connection
from django.urls import reverse

from hub import permissions
from hub.models import AuditEvent
from hub.secrets import MASK
from sites.models import DataStore, IPAddress, SiteLink
from tests.api.matrix import PermissionMatrix
from tests.factories import DataStoreFactory, SiteFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

KEY_ID = "AKIAPLAINTEXTKEYID0042"
SECRET = "wJalrXUtnFEMI/K7MDENG/plaintext-secret-0042"
AZURE_KEY = base64.b64encode(b"azure-plaintext-account-key-0042" * 2).decode()  # keys are base64, as for buckets


def s3_payload(**overrides) -> dict:
    return {"name": "archive", "type": "s3", "endpoint": "https://s3.example.org", "region": "eu-west-2",
            "bucket": "archive-bucket", "accesskeyid": KEY_ID, "secretaccesskey": SECRET, **overrides}


def raw_columns(store: DataStore) -> tuple[str, str, str]:
    """The credential columns as the database holds them (bypassing the field's decryption)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT accesskeyid, secretaccesskey, accesskey FROM {DataStore._meta.db_table} WHERE id = %s",
            [store.pk],
        )
        return cursor.fetchone()


# --- permission matrices --------------------------------------------------------------------------


class TestDataStorePermissions(PermissionMatrix):
    basename = "datastore"
    update_field = "name"

    def make_target(self):
        return DataStoreFactory(accesskeyid="AKIATARGET", secretaccesskey="target-secret")

    def create_payload(self):
        return s3_payload(name="matrix-store")

    def update_payload(self):
        return {"name": "renamed-store"}

    def bad_payloads(self):
        return [
            ({}, "name"),
            (s3_payload(name=""), "name"),
            (s3_payload(name="x" * 256), "name"),
            (s3_payload(type="tape"), "type"),
            ({"name": "no-type"}, "type"),
            (s3_payload(bucket=""), "bucket"),
            (s3_payload(accesskeyid=""), "accesskeyid"),
            (s3_payload(secretaccesskey=""), "secretaccesskey"),
            (s3_payload(endpoint="", region=""), "endpoint"),
            (s3_payload(accesskeyid=["list"]), "accesskeyid"),
        ]


class TestIPAddressPermissions(PermissionMatrix):
    basename = "ipaddress"
    update_field = "ipaddr"

    def make_target(self):
        return IPAddress.objects.create(datastore=DataStoreFactory(), ipaddr="192.0.2.1")

    def create_payload(self):
        return {"datastore": DataStoreFactory().pk, "ipaddr": "192.0.2.10"}

    def update_payload(self):
        return {"ipaddr": "192.0.2.99"}

    def bad_payloads(self):
        store = DataStoreFactory().pk
        return [
            ({}, "datastore"),
            ({"datastore": store}, "ipaddr"),
            ({"ipaddr": "192.0.2.5"}, "datastore"),
            ({"datastore": 999_999, "ipaddr": "192.0.2.5"}, "datastore"),
            ({"datastore": "abc", "ipaddr": "192.0.2.5"}, "datastore"),
            ({"datastore": store, "ipaddr": "2001:db8::1"}, "ipaddr"),
            ({"datastore": store, "ipaddr": "not-an-address"}, "ipaddr"),
            ({"datastore": store, "ipaddr": "256.1.1.1"}, "ipaddr"),
            ({"datastore": store, "ipaddr": "010.0.0.1"}, "ipaddr"),
            ({"datastore": store, "ipaddr": "0.0.0.0"}, "ipaddr"),
            ({"datastore": store, "ipaddr": "224.0.0.1"}, "ipaddr"),
            ({"datastore": store, "ipaddr": "255.255.255.255"}, "ipaddr"),
            ({"datastore": store, "ipaddr": ""}, "ipaddr"),
            ({"datastore": store, "ipaddr": 3232235777}, "ipaddr"),
        ]


class TestSiteLinkPermissions(PermissionMatrix):
    basename = "sitelink"
    update_field = "site_path"

    def make_target(self):
        return SiteLink.objects.create(site=SiteFactory(), datastore=DataStoreFactory(), site_path="/mmfs1/data",
                                       datastore_path="data")

    def create_payload(self):
        return {"site": SiteFactory().name, "datastore": DataStoreFactory().name, "site_path": "/mmfs1/link",
                "datastore_path": "archive/link"}

    def update_payload(self):
        return {"site_path": "/mmfs1/renamed"}

    def bad_payloads(self):
        site, store = SiteFactory().name, DataStoreFactory().name
        good = {"site": site, "datastore": store, "site_path": "/mmfs1/a", "datastore_path": "a"}
        return [
            ({}, "site"),
            ({**good, "site": "nowhere"}, "site"),
            ({**good, "datastore": "nothing"}, "datastore"),
            ({**good, "site_path": "relative/path"}, "site_path"),
            ({**good, "site_path": "/mmfs1/../etc"}, "site_path"),
            ({**good, "site_path": ""}, "site_path"),
            ({**good, "site_path": "/mmfs1/a\x00b"}, "site_path"),
            ({**good, "site_path": "/mmfs1/a\nb"}, "site_path"),
            ({**good, "site_path": "/"}, "site_path"),
            ({**good, "datastore_path": "a/../../b"}, "datastore_path"),
            ({**good, "datastore_path": ""}, "datastore_path"),
            ({**good, "datastore_path": "./"}, "datastore_path"),
            ({key: value for key, value in good.items() if key != "datastore_path"}, "datastore_path"),
        ]


# --- data stores: secrets -------------------------------------------------------------------------


def test_secrets_are_masked_in_every_answer_and_encrypted_in_the_database(admin):
    created = admin.post(reverse("datastore-list"), s3_payload(), format="json")
    assert created.status_code == 201, created.content
    store = DataStore.objects.get(pk=created.json()["id"])
    detail = admin.get(reverse("datastore-detail", args=[store.pk]))
    listing = admin.get(reverse("datastore-list"))
    streamed = b"".join(admin.get(reverse("datastore-list"), {"page_size": 0}).streaming_content).decode()
    patched = admin.patch(reverse("datastore-detail", args=[store.pk]), {"region": "eu-west-1"}, format="json")
    for text in (created.content.decode(), detail.content.decode(), listing.content.decode(), streamed,
                 patched.content.decode()):
        assert KEY_ID not in text and SECRET not in text
    assert created.json()["accesskeyid"] == MASK and created.json()["secretaccesskey"] == MASK
    assert created.json()["accesskey"] == ""  # not set: nothing to mask
    for column in raw_columns(store)[:2]:
        assert column.startswith("fernet:")
        assert KEY_ID not in column and SECRET not in column
    assert raw_columns(store)[2] == ""
    store.refresh_from_db()
    assert (store.accesskeyid, store.secretaccesskey) == (KEY_ID, SECRET)


def test_secrets_never_reach_the_audit_trail_but_a_rotation_is_recorded(admin):
    created = admin.post(reverse("datastore-list"), s3_payload(), format="json").json()
    url = reverse("datastore-detail", args=[created["id"]])
    admin.patch(url, {"accesskeyid": "AKIAROTATEDKEY0099"}, format="json")
    events = admin.get(reverse("auditevent-list")).content.decode()
    assert KEY_ID not in events and SECRET not in events and "AKIAROTATEDKEY0099" not in events
    update = AuditEvent.objects.get(model="sites.datastore", action="update")
    assert set(update.changes) == {"accesskeyid"}
    old, new = update.changes["accesskeyid"]
    assert old != new and old.startswith(MASK) and new.startswith(MASK)


def test_patch_that_omits_or_echoes_the_mask_keeps_the_secrets(admin):
    created = admin.post(reverse("datastore-list"), s3_payload(), format="json").json()
    url = reverse("datastore-detail", args=[created["id"]])
    assert admin.patch(url, {"bucket": "other-bucket"}, format="json").status_code == 200
    echoed = admin.get(url).json()
    echoed["bucket"] = "third-bucket"
    response = admin.patch(url, echoed, format="json")
    assert response.status_code == 200, response.content
    store = DataStore.objects.get(pk=created["id"])
    assert (store.bucket, store.accesskeyid, store.secretaccesskey) == ("third-bucket", KEY_ID, SECRET)


def test_patch_with_a_new_secret_replaces_it(admin):
    created = admin.post(reverse("datastore-list"), s3_payload(), format="json").json()
    url = reverse("datastore-detail", args=[created["id"]])
    response = admin.patch(url, {"secretaccesskey": "a-brand-new-secret"}, format="json")
    assert response.status_code == 200 and response.json()["secretaccesskey"] == MASK
    assert DataStore.objects.get(pk=created["id"]).secretaccesskey == "a-brand-new-secret"


def test_clearing_a_required_secret_is_refused_and_keeps_it(admin):
    created = admin.post(reverse("datastore-list"), s3_payload(), format="json").json()
    url = reverse("datastore-detail", args=[created["id"]])
    response = admin.patch(url, {"secretaccesskey": ""}, format="json")
    assert response.status_code == 400 and "secretaccesskey" in response.json()
    assert DataStore.objects.get(pk=created["id"]).secretaccesskey == SECRET


def test_changing_type_drops_the_old_types_credentials(admin):
    created = admin.post(reverse("datastore-list"), s3_payload(), format="json").json()
    url = reverse("datastore-detail", args=[created["id"]])
    response = admin.patch(url, {"type": "nfs", "endpoint": "nas01.example.org:/export/archive"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accesskeyid"] == body["secretaccesskey"] == body["bucket"] == body["region"] == ""
    assert raw_columns(DataStore.objects.get(pk=created["id"]))[:2] == ("", "")


def test_a_credential_with_whitespace_is_refused(admin):
    response = admin.post(reverse("datastore-list"), s3_payload(accesskeyid="AKIA WITH SPACE"), format="json")
    assert response.status_code == 400 and "accesskeyid" in response.json()


def test_a_member_granted_view_sees_the_store_but_never_its_secrets(member, member_user):
    store = DataStoreFactory(accesskeyid=KEY_ID, secretaccesskey=SECRET)
    permissions.grant("sites.view_datastore", member_user, store)
    response = member.get(reverse("datastore-detail", args=[store.pk]))
    assert response.status_code == 200
    assert KEY_ID not in response.content.decode() and SECRET not in response.content.decode()


# --- data stores: validation per type --------------------------------------------------------------


VALID_STORES = [
    s3_payload(),
    s3_payload(endpoint=""),  # AWS: a region is enough
    s3_payload(region="", endpoint="minio.local:9000"),  # S3-compatible: an endpoint is enough
    s3_payload(region="", endpoint="http://10.0.0.5:9000"),
    {"name": "blob", "type": "azure", "storageaccount": "hubarchive", "container": "cold-data",
     "accesskey": AZURE_KEY},
    {"name": "gcs", "type": "gcs", "bucket": "hub_archive.eu"},
    {"name": "gcs-key", "type": "gcs", "bucket": "hub-archive", "credentialsfile": "/etc/hub/gcs.json"},
    {"name": "nfs", "type": "nfs", "endpoint": "nas01.example.org"},
    {"name": "nfs-export", "type": "nfs", "endpoint": "10.0.0.5:/export/archive"},
    {"name": "smb", "type": "smb", "endpoint": "//filer.example.org/archive"},
    {"name": "smb-host", "type": "smb", "endpoint": "filer"},
    {"name": "folder", "type": "fs", "bucket": "/srv/archive"},
]


@pytest.mark.parametrize("payload", VALID_STORES, ids=[p["name"] + "-" + p["type"] for p in VALID_STORES])
def test_each_type_accepts_its_documented_fields(admin, payload):
    response = admin.post(reverse("datastore-list"), payload, format="json")
    assert response.status_code == 201, response.content


INVALID_STORES = [
    (s3_payload(bucket="Upper_Case"), "bucket"),
    (s3_payload(bucket="ab"), "bucket"),
    (s3_payload(bucket="192.168.1.1"), "bucket"),
    (s3_payload(bucket="two..dots"), "bucket"),
    (s3_payload(endpoint="not a host"), "endpoint"),
    (s3_payload(endpoint="ftp://s3.example.org"), "endpoint"),
    (s3_payload(endpoint="s3.example.org:70000"), "endpoint"),
    (s3_payload(region="eu west"), "region"),
    (s3_payload(container="cold"), "container"),
    (s3_payload(accesskey="x"), "accesskey"),
    ({"name": "b", "type": "azure", "container": "cold", "accesskey": "k"}, "storageaccount"),
    ({"name": "b", "type": "azure", "storageaccount": "acct", "accesskey": "k"}, "container"),
    ({"name": "b", "type": "azure", "storageaccount": "acct", "container": "cold"}, "accesskey"),
    ({"name": "b", "type": "azure", "storageaccount": "Has-Hyphen", "container": "cold", "accesskey": "k"},
     "storageaccount"),
    ({"name": "b", "type": "azure", "storageaccount": "acct", "container": "cold--data", "accesskey": "k"},
     "container"),
    ({"name": "b", "type": "azure", "storageaccount": "acct", "container": "cold", "accesskey": "k",
      "bucket": "x"}, "bucket"),
    ({"name": "g", "type": "gcs"}, "bucket"),
    ({"name": "g", "type": "gcs", "bucket": "b-ok", "credentialsfile": "relative.json"}, "credentialsfile"),
    ({"name": "g", "type": "gcs", "bucket": "b-ok", "credentialsfile": "/etc/../root/key.json"}, "credentialsfile"),
    ({"name": "g", "type": "gcs", "bucket": "b-ok", "secretaccesskey": "s"}, "secretaccesskey"),
    ({"name": "n", "type": "nfs"}, "endpoint"),
    ({"name": "n", "type": "nfs", "endpoint": "nas01:export"}, "endpoint"),
    ({"name": "n", "type": "nfs", "endpoint": "nas01", "bucket": "x"}, "bucket"),
    ({"name": "m", "type": "smb"}, "endpoint"),
    ({"name": "m", "type": "smb", "endpoint": "\\\\filer\\share"}, "endpoint"),
    ({"name": "f", "type": "fs"}, "bucket"),
    ({"name": "f", "type": "fs", "bucket": "relative/folder"}, "bucket"),
    ({"name": "f", "type": "fs", "bucket": "/srv/../etc"}, "bucket"),
    ({"name": "f", "type": "fs", "bucket": "/srv", "endpoint": "host"}, "endpoint"),
    # The rules data stores share with buckets (sites.validators).
    (s3_payload(bucket="xn--reserved"), "bucket"),
    (s3_payload(endpoint="s3.example.org."), "endpoint"),
    (s3_payload(accesskeyid="fernet:abc"), "accesskeyid"),
    (s3_payload(secretaccesskey=" leading-space"), "secretaccesskey"),
    (s3_payload(accesskeyid=12345), "accesskeyid"),
    ({"name": "b", "type": "azure", "storageaccount": "acct", "container": "cold", "accesskey": "not base64!"},
     "accesskey"),
    ({"name": "g", "type": "gcs", "bucket": "goog-archive"}, "bucket"),
    ({"name": "g", "type": "gcs", "bucket": "b-ok", "credentialsfile": "/etc//key.json"}, "credentialsfile"),
    ({"name": "f", "type": "fs", "bucket": "/"}, "bucket"),
    ({"name": "f", "type": "fs", "bucket": "/srv/a\\..\\..\\etc"}, "bucket"),
]


@pytest.mark.parametrize(("payload", "field"), INVALID_STORES, ids=[f"{p['type']}-{f}" for p, f in INVALID_STORES])
def test_each_type_refuses_missing_malformed_or_foreign_fields(admin, payload, field):
    response = admin.post(reverse("datastore-list"), payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not DataStore.objects.exists()


def test_a_folder_store_path_is_normalised(admin):
    response = admin.post(reverse("datastore-list"), {"name": "f", "type": "fs", "bucket": "//srv//archive/./"},
                          format="json")
    assert response.status_code == 201 and response.json()["bucket"] == "/srv/archive"


def test_patch_is_validated_against_the_stored_values(admin):
    store = DataStoreFactory(type="azure", endpoint="", bucket="", storageaccount="acct", container="cold",
                             accesskey="k")
    url = reverse("datastore-detail", args=[store.pk])
    assert admin.patch(url, {"container": "warm"}, format="json").status_code == 200
    response = admin.patch(url, {"type": "s3"}, format="json")
    assert response.status_code == 400
    assert {"bucket", "accesskeyid", "secretaccesskey", "endpoint"} <= set(response.json())
    store.refresh_from_db()
    assert (store.type, store.container, store.accesskey) == ("azure", "warm", "k")


def test_data_store_names_are_unique(admin):
    DataStoreFactory(name="archive")
    response = admin.post(reverse("datastore-list"), s3_payload(name="archive"), format="json")
    assert response.status_code == 400 and "name" in response.json()


def test_a_linked_data_store_cannot_be_deleted(admin):
    link = SiteLink.objects.create(site=SiteFactory(), datastore=DataStoreFactory(), site_path="/a",
                                   datastore_path="a")
    response = admin.delete(reverse("datastore-detail", args=[link.datastore_id]))
    assert response.status_code == 409 and "site link" in response.json()["detail"]
    assert DataStore.objects.filter(pk=link.datastore_id).exists()
    link.delete()
    IPAddress.objects.create(datastore_id=link.datastore_id, ipaddr="192.0.2.1")
    assert admin.delete(reverse("datastore-detail", args=[link.datastore_id])).status_code == 204
    assert not IPAddress.objects.exists()


def test_data_stores_filter_by_type_and_name(admin):
    s3, nfs = DataStoreFactory(name="a"), DataStoreFactory(name="b", type="nfs", bucket="")
    ids = lambda params: {row["id"] for row in admin.get(reverse("datastore-list"), params).json()["results"]}  # noqa: E731
    assert ids({"type": "nfs"}) == {nfs.pk}
    assert ids({"name": "a"}) == {s3.pk}
    assert admin.get(reverse("datastore-list"), {"type": "tape"}).status_code == 400


# --- IP addresses -------------------------------------------------------------------------------


def test_ip_address_reads_its_data_store_nested_and_writes_it_by_id(admin):
    store = DataStoreFactory(name="archive")
    created = admin.post(reverse("ipaddress-list"), {"datastore": store.pk, "ipaddr": " 192.0.2.7 "}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["ipaddr"] == "192.0.2.7"
    assert body["datastore"]["id"] == store.pk and body["datastore"]["name"] == "archive"
    assert body["datastore"]["url"].endswith(reverse("datastore-detail", args=[store.pk]))
    assert body["url"].endswith(reverse("ipaddress-detail", args=[body["id"]]))


def test_the_same_address_twice_on_one_store_is_a_clear_400_but_fine_on_another(admin):
    first, second = DataStoreFactory(name="first"), DataStoreFactory()
    IPAddress.objects.create(datastore=first, ipaddr="192.0.2.7")
    response = admin.post(reverse("ipaddress-list"), {"datastore": first.pk, "ipaddr": "192.0.2.7"}, format="json")
    assert response.status_code == 400
    assert response.json()["ipaddr"] == ["192.0.2.7 is already an address of data store 'first'."]
    assert admin.post(reverse("ipaddress-list"), {"datastore": second.pk, "ipaddr": "192.0.2.7"},
                      format="json").status_code == 201


def test_patching_an_address_onto_a_duplicate_is_a_400(admin):
    store = DataStoreFactory()
    IPAddress.objects.create(datastore=store, ipaddr="192.0.2.1")
    other = IPAddress.objects.create(datastore=store, ipaddr="192.0.2.2")
    url = reverse("ipaddress-detail", args=[other.pk])
    assert admin.patch(url, {"ipaddr": "192.0.2.1"}, format="json").status_code == 400
    assert admin.patch(url, {"ipaddr": "192.0.2.2"}, format="json").status_code == 200  # itself is no duplicate


def test_ipv6_gets_a_message_that_says_why(admin):
    response = admin.post(reverse("ipaddress-list"), {"datastore": DataStoreFactory().pk, "ipaddr": "::1"},
                          format="json")
    assert response.status_code == 400 and "IPv6" in response.json()["ipaddr"][0]


def test_ip_addresses_filter_by_data_store(admin):
    first, second = DataStoreFactory(), DataStoreFactory()
    mine = IPAddress.objects.create(datastore=first, ipaddr="192.0.2.1")
    IPAddress.objects.create(datastore=second, ipaddr="192.0.2.2")
    body = admin.get(reverse("ipaddress-list"), {"datastore_id": first.pk}).json()
    assert [row["id"] for row in body["results"]] == [mine.pk]
    assert admin.get(reverse("ipaddress-list"), {"datastore_id": "x"}).status_code == 400
    assert admin.get(reverse("ipaddress-list"), {"ipaddr": "192.0.2.2"}).json()["count"] == 1
    assert admin.get(reverse("ipaddress-list"), {"ipaddr": "garbage"}).status_code == 400


def test_view_on_a_data_store_shows_its_addresses(member, member_user):
    store = DataStoreFactory()
    visible = IPAddress.objects.create(datastore=store, ipaddr="192.0.2.1")
    IPAddress.objects.create(datastore=DataStoreFactory(), ipaddr="192.0.2.2")
    permissions.grant("sites.view_datastore", member_user, store)
    body = member.get(reverse("ipaddress-list")).json()
    assert [row["id"] for row in body["results"]] == [visible.pk]


def test_whoever_administers_a_store_adds_addresses_there_but_cannot_move_them_elsewhere(member, member_user):
    mine, theirs = DataStoreFactory(), DataStoreFactory()
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_datastore", member_user, mine)
    permissions.grant("sites.view_datastore", member_user, theirs)
    created = member.post(reverse("ipaddress-list"), {"datastore": mine.pk, "ipaddr": "192.0.2.1"}, format="json")
    assert created.status_code == 201, created.content
    refused = member.post(reverse("ipaddress-list"), {"datastore": theirs.pk, "ipaddr": "192.0.2.1"}, format="json")
    assert refused.status_code == 403
    moved = member.patch(reverse("ipaddress-detail", args=[created.json()["id"]]), {"datastore": theirs.pk},
                         format="json")
    assert moved.status_code == 403
    assert IPAddress.objects.get(pk=created.json()["id"]).datastore == mine


# --- site links -----------------------------------------------------------------------------------


def test_site_link_paths_are_normalised_and_site_and_store_go_by_name(admin):
    site, store = SiteFactory(name="lab"), DataStoreFactory(name="archive")
    response = admin.post(reverse("sitelink-list"), {
        "site": "lab", "datastore": "archive", "site_path": "//mmfs1//projects/./a/", "datastore_path": "x//y/./z/",
    }, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["site"], body["datastore"], body["site_path"], body["datastore_path"]) == (
        "lab", "archive", "/mmfs1/projects/a", "x/y/z"
    )
    assert (body["site_id"], body["datastore_id"]) == (site.pk, store.pk)
    assert body["url"].endswith(reverse("sitelink-detail", args=[body["id"]]))


def test_an_absolute_datastore_path_stays_absolute_and_root_is_slash(admin):
    SiteFactory(name="lab"), DataStoreFactory(name="archive")
    payload = {"site": "lab", "datastore": "archive", "site_path": "/mmfs1/a", "datastore_path": "/exports//a/"}
    assert admin.post(reverse("sitelink-list"), payload, format="json").json()["datastore_path"] == "/exports/a"
    payload.update(site_path="/mmfs1/b", datastore_path="/")
    assert admin.post(reverse("sitelink-list"), payload, format="json").json()["datastore_path"] == "/"


def test_linking_the_same_site_path_to_the_same_store_twice_is_a_clear_400(admin):
    SiteLink.objects.create(site=SiteFactory(name="lab"), datastore=DataStoreFactory(name="archive"),
                            site_path="/mmfs1/a", datastore_path="a")
    response = admin.post(reverse("sitelink-list"), {
        "site": "lab", "datastore": "archive", "site_path": "/mmfs1//a/", "datastore_path": "b",
    }, format="json")
    assert response.status_code == 400
    assert "already linked" in response.json()["site_path"][0]


def test_site_links_filter_by_site_and_data_store(admin):
    first_site, second_site = SiteFactory(), SiteFactory()
    first_store, second_store = DataStoreFactory(), DataStoreFactory()
    a = SiteLink.objects.create(site=first_site, datastore=first_store, site_path="/a", datastore_path="a")
    b = SiteLink.objects.create(site=second_site, datastore=first_store, site_path="/b", datastore_path="b")
    c = SiteLink.objects.create(site=first_site, datastore=second_store, site_path="/c", datastore_path="c")
    ids = lambda params: {row["id"] for row in admin.get(reverse("sitelink-list"), params).json()["results"]}  # noqa: E731
    assert ids({"site_id": first_site.pk}) == {a.pk, c.pk}
    assert ids({"datastore_id": first_store.pk}) == {a.pk, b.pk}
    assert ids({"site_id": first_site.pk, "datastore_id": first_store.pk}) == {a.pk}
    assert admin.get(reverse("sitelink-list"), {"site_id": "-1"}).status_code == 400


def test_view_on_a_site_shows_its_links_and_not_another_sites(member, member_user):
    mine, theirs, store = SiteFactory(), SiteFactory(), DataStoreFactory()
    visible = SiteLink.objects.create(site=mine, datastore=store, site_path="/a", datastore_path="a")
    SiteLink.objects.create(site=theirs, datastore=store, site_path="/b", datastore_path="b")
    permissions.grant("sites.view_site", member_user, mine)
    assert [row["id"] for row in member.get(reverse("sitelink-list")).json()["results"]] == [visible.pk]


def test_a_site_administrator_links_to_a_visible_store_only(member, member_user):
    site, visible = SiteFactory(name="lab"), DataStoreFactory(name="seen")
    DataStoreFactory(name="hidden")
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_site", member_user, site)
    permissions.grant("sites.view_datastore", member_user, visible)
    payload = {"site": "lab", "site_path": "/mmfs1/a", "datastore_path": "a"}
    created = member.post(reverse("sitelink-list"), {**payload, "datastore": "seen"}, format="json")
    assert created.status_code == 201, created.content
    refused = member.post(reverse("sitelink-list"), {**payload, "datastore": "hidden", "site_path": "/mmfs1/b"},
                          format="json")
    assert refused.status_code == 400
    assert refused.json()["datastore"] == ["Object with name=hidden does not exist."]
    moved = member.patch(reverse("sitelink-detail", args=[created.json()["id"]]), {"datastore": "hidden"},
                         format="json")
    assert moved.status_code == 400
    assert SiteLink.objects.count() == 1 and SiteLink.objects.get().datastore == visible


def test_a_site_administrator_cannot_move_a_link_to_a_site_they_do_not_administer(member, member_user):
    mine, theirs, store = SiteFactory(), SiteFactory(name="theirs"), DataStoreFactory()
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_site", member_user, mine)
    permissions.grant("sites.view_site", member_user, theirs)
    link = SiteLink.objects.create(site=mine, datastore=store, site_path="/a", datastore_path="a")
    response = member.patch(reverse("sitelink-detail", args=[link.pk]), {"site": "theirs"}, format="json")
    assert response.status_code == 403
    link.refresh_from_db()
    assert link.site == mine


def test_deleting_a_site_link_keeps_the_data_store(admin):
    link = SiteLink.objects.create(site=SiteFactory(), datastore=DataStoreFactory(), site_path="/a",
                                   datastore_path="a")
    assert admin.delete(reverse("sitelink-detail", args=[link.pk])).status_code == 204
    assert DataStore.objects.filter(pk=link.datastore_id).exists()


# --- hostile input ----------------------------------------------------------------------------------

HOSTILE = [
    "[]", "null", "0", '"text"', "{}", "[1, 2]",
    json.dumps({"name": {"$gt": ""}, "type": ["s3"], "ipaddr": 2**80, "datastore": 2**80, "site": 2**80}),
    json.dumps({"name": "x" * 100_000, "site_path": "/" + "y" * 100_000, "datastore_path": "z" * 100_000,
                "accesskeyid": "k" * 100_000, "ipaddr": "1" * 100_000}),
    json.dumps({"name": "\u0000", "type": "\u0000", "endpoint": "\u0000", "bucket": "\u0000", "site": "\u0000",
                "datastore": "\u0000", "site_path": "/\u0000", "ipaddr": "\u0000", "secretaccesskey": "\u0000"}),
    json.dumps({"datastore": -1, "ipaddr": "192.0.2.1", "site": None, "site_path": None, "type": None}),
    json.dumps({"type": "s3", "name": "n", "bucket": "b" * 64, "accesskeyid": MASK, "secretaccesskey": MASK,
                "region": "r"}),
]


@pytest.mark.parametrize("basename", ["datastore", "ipaddress", "sitelink"])
def test_hostile_bodies_never_cause_a_500_and_write_nothing(admin, basename):
    store = DataStoreFactory(accesskeyid="AKIA", secretaccesskey="s")
    targets = {
        "datastore": store,
        "ipaddress": IPAddress.objects.create(datastore=store, ipaddr="192.0.2.200"),
        "sitelink": SiteLink.objects.create(site=SiteFactory(), datastore=store, site_path="/a", datastore_path="a"),
    }
    model = type(targets[basename])
    before = sorted(model.objects.values_list(), key=repr)
    for body in HOSTILE:
        for method, url in (("POST", reverse(f"{basename}-list")),
                            ("PATCH", reverse(f"{basename}-detail", args=[targets[basename].pk]))):
            events = AuditEvent.objects.count()
            response = admin.generic(method, url, body, content_type="application/json")
            assert response.status_code < 500, (method, body[:60], response.status_code, response.content[:200])
            if method == "POST" or response.status_code >= 400:
                # A PATCH naming no field of the resource is a valid no-op; anything else is refused.
                assert 400 <= response.status_code < 500, (method, body[:60], response.status_code)
                assert AuditEvent.objects.count() == events
    assert sorted(model.objects.values_list(), key=repr) == before


@pytest.mark.parametrize("name", ["datastore-detail", "ipaddress-detail", "sitelink-detail"])
def test_hostile_lookups_are_404_not_500(admin, name):
    for value in ("%00", "abc", "9" * 30, "-1", "1e5"):
        response = admin.get(reverse(name, args=["placeholder"]).replace("placeholder", value))
        assert response.status_code == 404, (name, value, response.status_code)


def test_a_type_change_checks_the_values_it_keeps(admin):
    store = DataStoreFactory(type="s3", endpoint="", bucket="archive", region="eu-west-2", accesskeyid="k",
                             secretaccesskey="s")
    url = reverse("datastore-detail", args=[store.pk])
    response = admin.patch(url, {"type": "fs"}, format="json")
    assert response.status_code == 400 and "bucket" in response.json()  # "archive" is not a folder
    response = admin.patch(url, {"type": "fs", "bucket": "/srv//archive"}, format="json")
    assert response.status_code == 200, response.content
    store.refresh_from_db()
    assert (store.type, store.bucket, store.region, store.accesskeyid) == ("fs", "/srv/archive", "", "")
