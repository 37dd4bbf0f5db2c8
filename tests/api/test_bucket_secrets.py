"""Bucket credentials are write-only: never in an answer, the audit trail, a log line, a site task
or a broker message, and never plaintext in the database (but they decrypt to what was given)."""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core import serializers
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse

from hub.models import AuditEvent
from hub.secrets import MASK, PREFIX, decrypt
from sites.models import Bucket, SettingsTask
from sites.services import site_tasks
from tests.api.test_buckets import answer, azure_payload, fs_payload, gcs_payload, s3_payload, service_account
from tests.factories import SiteFactory, SpaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

S3_KEY_ID = "AKIASECRETIDQ7W3E9R1"
S3_SECRET = "s3SecretValue/Zq8w7e6r5t4y3u2i1o0pLKJH+mnb"
AZURE_KEY = base64.b64encode(b"azure-account-key-material-0123456789-abcdefghijklmnopqrstuvwxyz!").decode()
PEM_BODY = "MIIEvGCSPRIVATEKEYBODYc2VjcmV0LWtleS1tYXRlcmlhbA"
GCS_KEY_ID = "f00dfeedGCSKEYID0042"
GCS_JSON = service_account(private_key=f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n",
                           private_key_id=GCS_KEY_ID)
ROTATED = "RotatedSecretValue/NeverShown+998877"
# Values submitted in rejected requests: they must not be echoed either.
REJECTED = ["rejected secret with spaces ZXCV", "R3jectedAzureKey!!", "REJECTEDPEMBODYQWERTY"]
SECRETS = [S3_KEY_ID, S3_SECRET, AZURE_KEY, PEM_BODY, GCS_KEY_ID, ROTATED, *REJECTED]


@pytest.fixture
def watched(caplog, monkeypatch):
    """Every log record at DEBUG (SQL included) and every published order, for inspection."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    published: list[dict[str, Any]] = []
    monkeypatch.setattr(site_tasks, "_publish", lambda *args: published.append({"args": args}))
    previous = connection.force_debug_cursor
    connection.force_debug_cursor = True  # django.db.backends logs each query with its parameters
    yield caplog, published
    connection.force_debug_cursor = previous


def create(admin, payload: dict[str, Any]) -> dict[str, Any]:
    response = admin.post(reverse("bucket-list"), payload, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def raw_columns(bucket_id: int) -> dict[str, str]:
    columns = ("access_key_id", "secret_access_key", "access_key", "credentials_json")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM sites_bucket WHERE id = %s", [bucket_id])
        return dict(zip(columns, cursor.fetchone(), strict=True))


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_no_answer_audit_event_log_line_task_or_message_holds_a_secret(
    admin, watched, django_capture_on_commit_callbacks
):
    caplog, published = watched
    answers: list[str] = []

    def keep(response) -> dict[str, Any]:
        answers.append(response.content.decode())
        return response.json() if response.content else {}

    with django_capture_on_commit_callbacks(execute=True):
        s3 = keep(admin.post(reverse("bucket-list"), s3_payload(access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET),
                             format="json"))
        azure = keep(admin.post(reverse("bucket-list"), azure_payload(access_key=AZURE_KEY), format="json"))
        gcs = keep(admin.post(reverse("bucket-list"), gcs_payload(credentials_json=GCS_JSON), format="json"))
        fs = keep(admin.post(reverse("bucket-list"), fs_payload(), format="json"))
        for created in (s3, azure, gcs, fs):
            assert "id" in created, created
        for name in ("access_key_id", "secret_access_key"):
            assert s3[name] == MASK
        assert azure["access_key"] == MASK and gcs["credentials_json"] == MASK

        # Reads: list and details.
        keep(admin.get(reverse("bucket-list")))
        for created in (s3, azure, gcs, fs):
            keep(admin.get(reverse("bucket-detail", args=[created["id"]])))

        # A target using each bucket (and one with a nested new bucket), on a site: orders go out.
        site = SiteFactory()
        space = SpaceFactory(sites=[site])
        for index, created in enumerate((s3, azure, gcs, fs)):
            keep(admin.post(reverse("externaltarget-list"), {
                "name": f"t{index}", "space": space.pk, "bucket_instance": created["id"], "local_file_regex": ".*",
            }, format="json"))
        nested = keep(admin.post(reverse("externaltarget-list"), {
            "name": "nested", "space": space.pk, "local_file_regex": ".*",
            "bucket": s3_payload(name="nested-bucket", access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET),
        }, format="json"))
        assert nested["bucket"]["secret_access_key"] == MASK
        keep(admin.get(reverse("externaltarget-list")))
        keep(admin.get(reverse("externaltarget-detail", args=[nested["id"]])))

        # Patches: without secrets, with the mask sent back, and rotating one (which reconfigures).
        keep(admin.patch(reverse("bucket-detail", args=[s3["id"]]), {"label": "cold"}, format="json"))
        keep(admin.patch(reverse("bucket-detail", args=[azure["id"]]), {"access_key": MASK, "label": "az"},
                         format="json"))
        keep(admin.patch(reverse("bucket-detail", args=[s3["id"]]), {"secret_access_key": ROTATED}, format="json"))

        # Rejected submissions are not echoed.
        for response in (
            admin.post(reverse("bucket-list"), s3_payload(secret_access_key=REJECTED[0]), format="json"),
            admin.post(reverse("bucket-list"), azure_payload(access_key=REJECTED[1]), format="json"),
            admin.post(reverse("bucket-list"), gcs_payload(credentials_json=service_account(
                private_key=f"-----BEGIN PRIVATE KEY-----\n{REJECTED[2]}\n-----END PRIVATE KEY-----\n",
                client_email="not-an-address")), format="json"),
            admin.patch(reverse("bucket-detail", args=[azure["id"]]), {"access_key": REJECTED[1]}, format="json"),
        ):
            assert response.status_code == 400, response.content
            keep(response)

        # The soft delete of a bucket in use.
        deletion = admin.delete(reverse("bucket-detail", args=[s3["id"]]))
        assert deletion.status_code == 202
        keep(deletion)

    assert not leaks("\n".join(answers))
    assert not leaks(str(list(AuditEvent.objects.values())))
    assert AuditEvent.objects.filter(model="sites.bucket").count() >= 8
    orders = list(SettingsTask.objects.values_list("request", flat=True))
    assert len(orders) >= 5 and not leaks(json.dumps(orders))
    assert published and not leaks(repr(published))
    log_text = "\n".join([caplog.text, *(repr(record.args) for record in caplog.records)])
    assert "INSERT INTO" in log_text and PREFIX in log_text  # the SQL log was captured, ciphertext only
    assert not leaks(log_text)


def test_the_database_holds_ciphertext_that_decrypts_to_the_secrets(admin):
    s3 = create(admin, s3_payload(access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET))
    azure = create(admin, azure_payload(access_key=AZURE_KEY))
    gcs = create(admin, gcs_payload(credentials_json=GCS_JSON))
    expected = {
        s3["id"]: {"access_key_id": S3_KEY_ID, "secret_access_key": S3_SECRET},
        azure["id"]: {"access_key": AZURE_KEY},
        gcs["id"]: {"credentials_json": GCS_JSON},
    }
    for bucket_id, secrets in expected.items():
        raw = raw_columns(bucket_id)
        for column, value in raw.items():
            if column not in secrets:
                assert value == "", (bucket_id, column)
                continue
            assert value.startswith(PREFIX) and not leaks(value)
            plaintext = decrypt(value)
            if column == "credentials_json":
                assert json.loads(plaintext) == secrets[column]
            else:
                assert plaintext == secrets[column]


def test_a_patch_without_secrets_or_with_the_mask_keeps_them(admin):
    s3 = create(admin, s3_payload(access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET))
    url = reverse("bucket-detail", args=[s3["id"]])
    before = raw_columns(s3["id"])
    assert admin.patch(url, {"label": "renamed", "region": "us-east-1"}, format="json").status_code == 200
    assert admin.patch(url, {"access_key_id": MASK, "secret_access_key": MASK}, format="json").status_code == 200
    bucket = Bucket.objects.get(pk=s3["id"])
    assert bucket.access_key_id == S3_KEY_ID and bucket.secret_access_key == S3_SECRET
    assert decrypt(raw_columns(s3["id"])["secret_access_key"]) == decrypt(before["secret_access_key"])


def test_a_patch_with_a_new_secret_replaces_it(admin):
    s3 = create(admin, s3_payload(access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET))
    response = admin.patch(reverse("bucket-detail", args=[s3["id"]]), {"secret_access_key": ROTATED}, format="json")
    assert response.status_code == 200 and response.json()["secret_access_key"] == MASK
    assert decrypt(raw_columns(s3["id"])["secret_access_key"]) == ROTATED
    assert Bucket.objects.get(pk=s3["id"]).access_key_id == S3_KEY_ID


def test_gcs_credentials_are_kept_when_a_patch_omits_them(admin):
    gcs = create(admin, gcs_payload(credentials_json=GCS_JSON))
    assert admin.patch(reverse("bucket-detail", args=[gcs["id"]]), {"label": "g"}, format="json").status_code == 200
    assert json.loads(Bucket.objects.get(pk=gcs["id"]).credentials_json) == GCS_JSON


def test_the_mask_is_not_accepted_as_a_new_secret(admin):
    response = admin.post(reverse("bucket-list"), s3_payload(secret_access_key=MASK), format="json")
    assert response.status_code == 400 and "secret_access_key" in response.json()


def test_a_value_in_the_storage_format_is_not_accepted_as_a_secret(admin):
    response = admin.post(reverse("bucket-list"), s3_payload(access_key_id=f"{PREFIX}abc"), format="json")
    assert response.status_code == 400 and "access_key_id" in response.json()


def test_changing_the_storage_type_drops_the_old_credentials(admin):
    s3 = create(admin, s3_payload(access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET))
    response = admin.patch(reverse("bucket-detail", args=[s3["id"]]),
                           {"storage_type": "fs", "migration_target_folder": "/mnt/x"}, format="json")
    assert response.status_code == 200, response.content
    assert raw_columns(s3["id"]) == {"access_key_id": "", "secret_access_key": "", "access_key": "",
                                     "credentials_json": ""}


def test_removal_orders_of_a_soft_delete_carry_no_credentials(admin):
    s3 = create(admin, s3_payload(access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET))
    site = SiteFactory()
    space = SpaceFactory(sites=[site])
    admin.post(reverse("externaltarget-list"), {"name": "t", "space": space.pk, "bucket_instance": s3["id"],
                                                "local_file_regex": ".*"}, format="json")
    assert admin.delete(reverse("bucket-detail", args=[s3["id"]])).status_code == 202
    removal = SettingsTask.objects.get(tasktype="remove_target")
    assert not leaks(json.dumps(removal.request))
    answer(removal)
    assert not Bucket.objects.filter(pk=s3["id"]).exists()


def test_a_dump_holds_ciphertext_and_loads_back_to_the_secrets(admin):
    s3 = create(admin, s3_payload(access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET))
    gcs = create(admin, gcs_payload(credentials_json=GCS_JSON))
    dump = serializers.serialize("json", Bucket.objects.all())
    assert not leaks(dump) and PREFIX in dump
    Bucket.objects.all().delete()
    for restored in serializers.deserialize("json", dump):
        restored.save()
    assert Bucket.objects.get(pk=s3["id"]).secret_access_key == S3_SECRET
    assert json.loads(Bucket.objects.get(pk=gcs["id"]).credentials_json) == GCS_JSON
    assert decrypt(raw_columns(s3["id"])["access_key_id"]) == S3_KEY_ID


def test_an_undecryptable_token_is_refused_rather_than_stored_as_a_secret():
    bucket = Bucket(name="forged", storage_type="s3", access_key_id="fernet:not-a-token", secret_access_key="s")
    with pytest.raises(ValidationError), transaction.atomic():
        bucket.save()
    assert not Bucket.objects.filter(name="forged").exists()


def test_rotate_secrets_re_encrypts_under_the_new_first_key(settings):
    old_key = settings.HUB_FIELD_ENCRYPTION_KEYS[0]
    bucket = Bucket.objects.create(name="rotate-me", storage_type="s3", access_key_id="AKIAROTATE",
                                   secret_access_key="rotate-secret-value")
    new_key = Fernet.generate_key().decode()
    settings.HUB_FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_secrets", stdout=io.StringIO())
    settings.HUB_FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone: rows must still decrypt
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_access_key FROM sites_bucket WHERE id = %s", [bucket.pk])
        stored = cursor.fetchone()[0]
    assert "rotate-secret-value" not in stored
    assert Bucket.objects.get(pk=bucket.pk).secret_access_key == "rotate-secret-value"
