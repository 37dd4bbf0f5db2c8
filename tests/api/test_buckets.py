"""Buckets: the permission matrix, each storage type's rules, PATCH merging, and the soft delete."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.urls import reverse

from hub.models import AuditEvent
from sites.models import Bucket, ExternalTarget, SettingsTask
from sites.services import site_tasks
from sites.services import targets as target_service  # noqa: F401  (registers the task hooks)
from tests.api.matrix import PermissionMatrix
from tests.factories import BucketFactory, ExternalTargetFactory, SiteFactory, SpaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

AZURE_KEY = base64.b64encode(bytes(range(64))).decode()
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
REFERENCE_FIELDS = {
    "access_key", "access_key_id", "advanced_settings", "container", "credentials_file", "credentials_json",
    "endpoint", "external_targets", "id", "label", "migration_target_folder", "name", "port", "region", "scheme",
    "secret_access_key", "soft_deleting", "ssl_verify", "storage_account", "storage_type",
}


# --- payloads (also used by the target and secret tests) -------------------------------------------

def s3_payload(**overrides: Any) -> dict[str, Any]:
    return {"storage_type": "s3", "name": "archive-bucket", "endpoint": "minio.example.org", "port": 9000,
            "scheme": "https", "region": "eu-west-2", "access_key_id": "AKIAEXAMPLEKEY000042",
            "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", **overrides}


def azure_payload(**overrides: Any) -> dict[str, Any]:
    return {"storage_type": "azure", "name": "azure-archive", "storage_account": "hubarchive",
            "container": "migrated-data", "access_key": AZURE_KEY, **overrides}


def service_account(**overrides: Any) -> dict[str, Any]:
    return {"type": "service_account", "project_id": "hub-project", "private_key_id": "0123abcd",
            "private_key": PRIVATE_KEY, "client_email": "hub@hub-project.iam.gserviceaccount.com", **overrides}


def gcs_payload(**overrides: Any) -> dict[str, Any]:
    return {"storage_type": "gcs", "name": "gcs-archive", "credentials_json": service_account(), **overrides}


def fs_payload(**overrides: Any) -> dict[str, Any]:
    return {"storage_type": "fs", "name": "nfs-archive", "migration_target_folder": "/mnt/archive/hub", **overrides}


PAYLOADS = {"s3": s3_payload, "azure": azure_payload, "gcs": gcs_payload, "fs": fs_payload}


def without(payload: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in names}


def bucket_url(bucket: Bucket | int) -> str:
    return reverse("bucket-detail", args=[getattr(bucket, "pk", bucket)])


def answer(task: SettingsTask, state: str = "SUCCESS", results: Any = None, error: str | None = None) -> None:
    """Play the site's agent: report ``task`` finished."""
    report: dict[str, Any] = {"task_id": str(task.task_id), "state": state, "results": results}
    if error is not None:
        report["error"] = error
    site_tasks.record_result(report)


def target_on(bucket: Bucket, sites: list, **kwargs: Any) -> ExternalTarget:
    space = SpaceFactory(sites=sites)
    return ExternalTargetFactory(bucket=bucket, space=space, available_on_sites=sites, **kwargs)


# --- the permission matrix -------------------------------------------------------------------------

class TestBucketPermissions(PermissionMatrix):
    basename = "bucket"
    update_field = "label"

    def make_target(self):
        return BucketFactory()

    def create_payload(self):
        return s3_payload()

    def update_payload(self):
        return {"label": "Cold archive"}

    def bad_payloads(self):
        return [
            ({}, "storage_type"),
            ({"storage_type": "nfs", "name": "x"}, "storage_type"),
            (without(s3_payload(), "name"), "name"),
            (s3_payload(name="Not_Valid"), "name"),
            (without(s3_payload(), "secret_access_key"), "secret_access_key"),
            (s3_payload(port=70000), "port"),
            (s3_payload(container="other"), "container"),
            (without(azure_payload(), "access_key"), "access_key"),
            (gcs_payload(credentials_json={"type": "authorized_user"}), "credentials_json"),
            (fs_payload(migration_target_folder="/data/../etc"), "migration_target_folder"),
            (s3_payload(advanced_settings=["not", "an", "object"]), "advanced_settings"),
        ]


# --- representation ------------------------------------------------------------------------------

def test_representation_has_the_reference_fields_and_masks_every_secret(admin):
    created = admin.post(reverse("bucket-list"), s3_payload(), format="json")
    assert created.status_code == 201, created.content
    body = admin.get(bucket_url(created.json()["id"])).json()
    assert REFERENCE_FIELDS <= set(body)
    assert body["access_key_id"] == body["secret_access_key"] == "********"
    assert body["access_key"] == body["credentials_json"] == ""
    assert body["soft_deleting"] is False and body["external_targets"] == [] and body["deletion_error"] is None


def test_external_targets_lists_the_ids_of_the_targets_using_the_bucket(admin):
    bucket = BucketFactory()
    first, second = ExternalTargetFactory(bucket=bucket), ExternalTargetFactory(bucket=bucket)
    assert admin.get(bucket_url(bucket)).json()["external_targets"] == sorted([first.pk, second.pk])


@pytest.mark.parametrize("storage_type", sorted(PAYLOADS))
def test_each_storage_type_can_be_created_with_its_own_fields(admin, storage_type):
    response = admin.post(reverse("bucket-list"), PAYLOADS[storage_type](), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["storage_type"] == storage_type


def test_s3_defaults_scheme_to_https_and_an_empty_endpoint_means_aws(admin):
    response = admin.post(reverse("bucket-list"), without(s3_payload(), "endpoint", "port", "scheme", "region"),
                          format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["scheme"] == "https" and body["endpoint"] == "" and body["port"] is None
    assert body["ssl_verify"] is True


# --- per-type validation -------------------------------------------------------------------------

REQUIRED = {
    "s3": ("name", "access_key_id", "secret_access_key"),
    "azure": ("name", "storage_account", "container", "access_key"),
    "gcs": ("name", "credentials_json"),
    "fs": ("name", "migration_target_folder"),
}


@pytest.mark.parametrize(("storage_type", "field"),
                         [(kind, name) for kind, names in REQUIRED.items() for name in names])
def test_every_required_field_of_each_type_is_required(admin, storage_type, field):
    response = admin.post(reverse("bucket-list"), without(PAYLOADS[storage_type](), field), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Bucket.objects.exists()


@pytest.mark.parametrize("name", [
    "ab", "a" * 64, "Upper-case", "under_score", "-starts-with-hyphen", "ends-with-hyphen-", "two..dots",
    "dot.-hyphen", "192.168.10.20", "xn--punycode", "sthree-bucket", "my-bucket-s3alias", "access--ol-s3",
])
def test_s3_bucket_names_follow_the_s3_naming_rules(admin, name):
    response = admin.post(reverse("bucket-list"), s3_payload(name=name), format="json")
    assert response.status_code == 400 and "name" in response.json(), (name, response.content)


@pytest.mark.parametrize("name", ["abc", "my.bucket.example", "a1-b2-c3", "x" * 63])
def test_valid_s3_bucket_names_are_accepted(admin, name):
    assert admin.post(reverse("bucket-list"), s3_payload(name=name), format="json").status_code == 201


@pytest.mark.parametrize(("endpoint", "hint"), [
    ("https://minio.example.org", "scheme"),
    ("minio.example.org:9000", "port"),
    ("minio.example.org/bucket", "path"),
    ("bad_host!.example.org", "host name"),
    ("-leading.example.org", "host name"),
])
def test_endpoint_is_a_bare_host_name_with_a_clear_message(admin, endpoint, hint):
    response = admin.post(reverse("bucket-list"), s3_payload(endpoint=endpoint), format="json")
    assert response.status_code == 400
    assert hint in response.json()["endpoint"][0]


@pytest.mark.parametrize("endpoint", ["10.0.0.5", "::1", "[2001:db8::1]", "s3.eu-west-2.amazonaws.com", "minio"])
def test_ip_addresses_and_host_names_are_valid_endpoints(admin, endpoint):
    response = admin.post(reverse("bucket-list"), s3_payload(endpoint=endpoint), format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(("field", "value"), [
    ("port", 0), ("port", 65536), ("port", "https"), ("scheme", "ftp"), ("region", "eu west 2"),
    ("ssl_verify", "maybe"), ("access_key_id", "has space"), ("secret_access_key", "line\nbreak"),
    ("access_key_id", 12345), ("secret_access_key", "x" * 1025), ("storage_type", "S3"), ("label", "x" * 256),
])
def test_s3_fields_with_wrong_values_are_refused(admin, field, value):
    response = admin.post(reverse("bucket-list"), s3_payload(**{field: value}), format="json")
    assert response.status_code == 400 and field in response.json(), (field, value, response.content)


@pytest.mark.parametrize(("field", "value"), [
    ("storage_account", "ab"), ("storage_account", "a" * 25), ("storage_account", "Upper1"),
    ("container", "ab"), ("container", "Has-Upper"), ("container", "a--b"), ("container", "-abc"),
    ("container", "abc-"), ("container", "a" * 64), ("access_key", "not base64 at all"),
    ("access_key", "c2hvcnQ="), ("access_key", AZURE_KEY[:-1]), ("name", "has space"),
])
def test_azure_fields_follow_azures_rules(admin, field, value):
    response = admin.post(reverse("bucket-list"), azure_payload(**{field: value}), format="json")
    assert response.status_code == 400 and field in response.json(), (field, value, response.content)


@pytest.mark.parametrize("name", ["ab", "goog-archive", "my-google-data", "g00gle-x", "_under", "UPPER", "a" * 64,
                                  "10.1.2.3"])
def test_gcs_bucket_names_follow_the_gcs_naming_rules(admin, name):
    response = admin.post(reverse("bucket-list"), gcs_payload(name=name), format="json")
    assert response.status_code == 400 and "name" in response.json(), (name, response.content)


@pytest.mark.parametrize("credentials", [
    ["a", "list"],
    "not json",
    service_account(type="authorized_user"),
    without(service_account(), "private_key"),
    without(service_account(), "client_email"),
    without(service_account(), "project_id"),
    service_account(private_key="not a pem"),
    service_account(client_email="not-an-email"),
])
def test_gcs_credentials_json_must_look_like_a_service_account_key(admin, credentials):
    response = admin.post(reverse("bucket-list"), gcs_payload(credentials_json=credentials), format="json")
    assert response.status_code == 400 and "credentials_json" in response.json(), response.content


def test_gcs_credentials_may_be_given_as_json_text(admin):
    import json

    response = admin.post(reverse("bucket-list"), gcs_payload(credentials_json=json.dumps(service_account())),
                          format="json")
    assert response.status_code == 201, response.content


def test_gcs_takes_a_credentials_file_instead_of_inline_credentials(admin):
    payload = without(gcs_payload(credentials_file="/etc/hub/gcs-key.json"), "credentials_json")
    response = admin.post(reverse("bucket-list"), payload, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["credentials_file"] == "/etc/hub/gcs-key.json"


def test_gcs_refuses_both_kinds_of_credentials_and_neither(admin):
    both = admin.post(reverse("bucket-list"), gcs_payload(credentials_file="/etc/key.json"), format="json")
    assert both.status_code == 400 and "credentials_file" in both.json()
    neither = admin.post(reverse("bucket-list"), without(gcs_payload(), "credentials_json"), format="json")
    assert neither.status_code == 400 and "credentials_json" in neither.json()


@pytest.mark.parametrize("path", ["relative/key.json", "/etc/../key.json", "/etc//key.json"])
def test_gcs_credentials_file_is_an_absolute_normalised_path(admin, path):
    payload = without(gcs_payload(credentials_file=path), "credentials_json")
    response = admin.post(reverse("bucket-list"), payload, format="json")
    assert response.status_code == 400 and "credentials_file" in response.json()


@pytest.mark.parametrize(("folder", "message"), [
    ("relative/dir", "absolute"),
    ("/", "root"),
    ("/data/../etc", ".."),
    ("/data/./x", "normalised"),
    ("/data//x", "normalised"),
    ("/data/x/", "normalised"),
    ("//data", "normalised"),
    ("", "blank"),
])
def test_fs_migration_target_folder_is_absolute_normalised_and_not_root(admin, folder, message):
    response = admin.post(reverse("bucket-list"), fs_payload(migration_target_folder=folder), format="json")
    assert response.status_code == 400
    assert message in response.json()["migration_target_folder"][0]


@pytest.mark.parametrize(("storage_type", "field", "value"), [
    ("s3", "container", "data"),
    ("s3", "access_key", AZURE_KEY),
    ("s3", "credentials_json", {"type": "service_account"}),
    ("azure", "region", "eu-west-2"),
    ("azure", "secret_access_key", "secret"),
    ("gcs", "access_key_id", "AKIA000"),
    ("fs", "endpoint", "nas.example.org"),
    ("fs", "ssl_verify", False),
    ("fs", "access_key_id", "AKIA000"),
])
def test_a_field_of_another_storage_type_is_refused(admin, storage_type, field, value):
    response = admin.post(reverse("bucket-list"), PAYLOADS[storage_type](**{field: value}), format="json")
    assert response.status_code == 400
    assert f"Not used by '{storage_type}' buckets" in response.json()[field][0]


def test_empty_fields_of_other_types_are_accepted_so_a_read_representation_can_be_sent_back(admin):
    payload = s3_payload(container="", access_key="", credentials_json="", migration_target_folder="",
                         storage_account="", credentials_file="")
    response = admin.post(reverse("bucket-list"), payload, format="json")
    assert response.status_code == 201, response.content


# --- PATCH ----------------------------------------------------------------------------------------

def test_patch_validates_the_merged_bucket(admin):
    bucket = BucketFactory()
    assert admin.patch(bucket_url(bucket), {"name": "Bad Name"}, format="json").status_code == 400
    assert admin.patch(bucket_url(bucket), {"access_key_id": ""}, format="json").status_code == 400
    response = admin.patch(bucket_url(bucket), {"region": "us-east-1", "port": None}, format="json")
    assert response.status_code == 200, response.content
    bucket.refresh_from_db()
    assert bucket.region == "us-east-1" and bucket.port is None
    assert bucket.access_key_id == "AKIAFACTORYKEY000001"


def test_sending_a_read_representation_back_changes_nothing(admin):
    bucket = BucketFactory()
    body = admin.get(bucket_url(bucket)).json()
    response = admin.patch(bucket_url(bucket), body, format="json")
    assert response.status_code == 200, response.content
    fresh = Bucket.objects.get(pk=bucket.pk)
    assert fresh.secret_access_key == bucket.secret_access_key and fresh.name == bucket.name


def test_changing_the_storage_type_of_an_unused_bucket_clears_the_old_types_settings(admin):
    bucket = BucketFactory()
    refused = admin.patch(bucket_url(bucket), {"storage_type": "fs"}, format="json")
    assert refused.status_code == 400 and "migration_target_folder" in refused.json()
    response = admin.patch(bucket_url(bucket), {"storage_type": "fs", "migration_target_folder": "/mnt/a"},
                           format="json")
    assert response.status_code == 200, response.content
    fresh = Bucket.objects.get(pk=bucket.pk)
    assert fresh.storage_type == "fs" and fresh.migration_target_folder == "/mnt/a"
    assert fresh.access_key_id == fresh.secret_access_key == "" and fresh.endpoint == "" and fresh.port is None


def test_changing_the_storage_type_of_a_bucket_used_by_targets_is_refused(admin):
    bucket = BucketFactory()
    ExternalTargetFactory(bucket=bucket)
    response = admin.patch(bucket_url(bucket), {"storage_type": "fs", "migration_target_folder": "/mnt/a"},
                           format="json")
    assert response.status_code == 400
    assert "used by external targets" in response.json()["storage_type"][0]
    assert Bucket.objects.get(pk=bucket.pk).storage_type == "s3"


def test_gcs_credentials_file_given_by_patch_replaces_inline_credentials(admin):
    created = admin.post(reverse("bucket-list"), gcs_payload(), format="json").json()
    response = admin.patch(bucket_url(created["id"]), {"credentials_file": "/etc/hub/key.json"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["credentials_json"] == ""
    assert Bucket.objects.get(pk=created["id"]).credentials_json == ""


def test_changing_a_bucket_reconfigures_its_targets_on_their_sites(admin):
    site_a, site_b = SiteFactory(), SiteFactory()
    bucket = BucketFactory()
    target = target_on(bucket, [site_a, site_b])
    target.configured_on_sites.set([site_a, site_b])
    response = admin.patch(bucket_url(bucket), {"secret_access_key": "rotated-secret-value"}, format="json")
    assert response.status_code == 200, response.content
    tasks = SettingsTask.objects.filter(tasktype="configure_target")
    assert sorted(tasks.values_list("site_id", flat=True)) == sorted([site_a.pk, site_b.pk])
    assert all(task.request["credentials_ref"] == {"bucket": bucket.pk} for task in tasks)
    assert target.configured_on_sites.count() == 0


def test_a_patch_that_changes_nothing_sends_nothing(admin):
    bucket = BucketFactory()
    target_on(bucket, [SiteFactory()])
    assert admin.patch(bucket_url(bucket), {"label": ""}, format="json").status_code == 200
    assert not SettingsTask.objects.exists()


# --- filters ----------------------------------------------------------------------------------------

def test_filters_by_storage_type_and_name(admin):
    s3 = BucketFactory(name="alpha")
    fs = BucketFactory(name="beta", storage_type="fs", migration_target_folder="/mnt/b")
    url = reverse("bucket-list")
    assert [b["id"] for b in admin.get(url, {"storage_type": "fs"}).json()["results"]] == [fs.pk]
    assert [b["id"] for b in admin.get(url, {"name": "alpha"}).json()["results"]] == [s3.pk]
    assert admin.get(url, {"storage_type": "tape"}).status_code == 400


# --- delete and soft delete ---------------------------------------------------------------------

def test_an_unused_bucket_is_deleted_at_once(admin):
    bucket = BucketFactory()
    assert admin.delete(bucket_url(bucket)).status_code == 204
    assert not Bucket.objects.filter(pk=bucket.pk).exists()
    assert AuditEvent.objects.filter(action="delete", model="sites.bucket", object_pk=str(bucket.pk)).exists()


def test_a_bucket_whose_targets_are_on_no_site_is_deleted_with_them_at_once(admin):
    bucket = BucketFactory()
    target = ExternalTargetFactory(bucket=bucket)
    assert admin.delete(bucket_url(bucket)).status_code == 204
    assert not Bucket.objects.filter(pk=bucket.pk).exists()
    assert not ExternalTarget.objects.filter(pk=target.pk).exists()
    assert not SettingsTask.objects.exists()


def soft_delete(admin, bucket: Bucket) -> dict[str, Any]:
    response = admin.delete(bucket_url(bucket))
    assert response.status_code == 202, response.content
    return response.json()


def test_a_bucket_in_use_is_soft_deleted_with_a_removal_task_per_target_and_site(admin):
    site_a, site_b = SiteFactory(), SiteFactory()
    bucket = BucketFactory()
    first = target_on(bucket, [site_a, site_b])
    second = target_on(bucket, [site_b])
    body = soft_delete(admin, bucket)
    assert body["soft_deleting"] is True and body["id"] == bucket.pk
    pairs = {(task["target"], task["site"]) for task in body["tasks"]}
    assert pairs == {(first.pk, site_a.pk), (first.pk, site_b.pk), (second.pk, site_b.pk)}
    assert all(task["tasktype"] == "remove_target" and task["state"] == "PENDING" for task in body["tasks"])
    assert Bucket.objects.get(pk=bucket.pk).soft_deleting is True
    for task in SettingsTask.objects.filter(tasktype="remove_target"):
        assert set(task.request) == {"endpoint_name", "target", "bucket", "credentials_ref"}
        assert "secret_access_key" not in task.request["bucket"] and "access_key_id" not in task.request["bucket"]
        assert task.request["bucket"]["soft_deleting"] is True
    assert admin.get(bucket_url(bucket)).json()["soft_deleting"] is True
    event = AuditEvent.objects.get(action="delete", model="sites.bucket")
    assert event.status_code == 202 and event.changes["soft_deleting"] == [False, True]


def test_the_bucket_and_its_targets_go_when_the_last_removal_succeeds(admin):
    site_a, site_b = SiteFactory(), SiteFactory()
    bucket = BucketFactory()
    target = target_on(bucket, [site_a, site_b])
    soft_delete(admin, bucket)
    first, second = SettingsTask.objects.filter(tasktype="remove_target").order_by("pk")
    answer(first, "STARTED")
    answer(first)
    assert Bucket.objects.filter(pk=bucket.pk, soft_deleting=True).exists()
    assert ExternalTarget.objects.filter(pk=target.pk).exists()
    answer(second)
    assert not Bucket.objects.filter(pk=bucket.pk).exists()
    assert not ExternalTarget.objects.filter(pk=target.pk).exists()


def test_a_failed_removal_keeps_the_bucket_soft_deleting_and_says_why(admin):
    site_a, site_b = SiteFactory(name="paris"), SiteFactory(name="leeds")
    bucket = BucketFactory()
    target = target_on(bucket, [site_a, site_b], name="cold")
    soft_delete(admin, bucket)
    on_a, on_b = SettingsTask.objects.filter(tasktype="remove_target").order_by("site_id")
    answer(on_a, "FAILURE", error="agent config is read-only")
    answer(on_b)
    assert Bucket.objects.filter(pk=bucket.pk, soft_deleting=True).exists()
    assert ExternalTarget.objects.filter(pk=target.pk).exists()
    error = admin.get(bucket_url(bucket)).json()["deletion_error"]
    assert "cold" in error and site_a.name in error and "agent config is read-only" in error
    listed = admin.get(reverse("bucket-list")).json()["results"]
    assert [item["deletion_error"] for item in listed] == [error]
    nested = admin.get(reverse("externaltarget-detail", args=[target.pk])).json()["bucket"]
    assert nested["deletion_error"] == error


def test_deleting_again_retries_only_the_failed_removals_and_then_finishes(admin):
    site_a, site_b = SiteFactory(), SiteFactory()
    bucket = BucketFactory()
    target = target_on(bucket, [site_a, site_b])
    soft_delete(admin, bucket)
    on_a, on_b = SettingsTask.objects.filter(tasktype="remove_target").order_by("site_id")
    answer(on_a, "FAILURE", error="timeout")
    answer(on_b)
    retry = soft_delete(admin, bucket)
    assert [(task["target"], task["site"]) for task in retry["tasks"]] == [(target.pk, site_a.pk)]
    assert admin.get(bucket_url(bucket)).json()["deletion_error"] is None  # the retry is running
    answer(SettingsTask.objects.get(pk=retry["tasks"][0]["id"]))
    assert not Bucket.objects.filter(pk=bucket.pk).exists()


def test_deleting_again_while_removals_run_is_a_conflict(admin):
    bucket = BucketFactory()
    target_on(bucket, [SiteFactory()])
    soft_delete(admin, bucket)
    response = admin.delete(bucket_url(bucket))
    assert response.status_code == 409
    assert "still running" in response.json()["detail"]


def test_a_soft_deleting_bucket_refuses_changes_and_new_targets(admin):
    site = SiteFactory()
    bucket = BucketFactory()
    target = target_on(bucket, [site])
    soft_delete(admin, bucket)
    assert admin.patch(bucket_url(bucket), {"label": "x"}, format="json").status_code == 409
    target_url = reverse("externaltarget-detail", args=[target.pk])
    assert admin.patch(target_url, {"enabled": False}, format="json").status_code == 409
    assert admin.delete(target_url).status_code == 409
    new_target = {"name": "late", "space": target.space_id, "bucket_instance": bucket.pk, "local_file_regex": ".*"}
    response = admin.post(reverse("externaltarget-list"), new_target, format="json")
    assert response.status_code == 400 and "being deleted" in response.json()["bucket_instance"][0]


def test_a_removal_report_for_another_reason_does_not_delete_a_bucket(admin):
    site = SiteFactory()
    bucket = BucketFactory()
    target = target_on(bucket, [site, SiteFactory()])
    space_sites = [site.pk]
    admin.patch(reverse("externaltarget-detail", args=[target.pk]), {"available_on_sites": space_sites},
                format="json")
    removal = SettingsTask.objects.get(tasktype="remove_target")
    answer(removal)
    assert Bucket.objects.filter(pk=bucket.pk, soft_deleting=False).exists()
