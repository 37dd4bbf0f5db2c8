"""Buckets and external targets as the API reference shapes them, and the remote listing contract.

Buckets
    One outer serializer (``BucketSerializer``) carries every field of the reference. Its
    ``validate`` merges the input over the stored bucket and hands the merged values of the
    bucket's storage type to that type's own serializer (``TYPE_SERIALIZERS``), which owns the
    type's rules. A PATCH is therefore always checked as the complete bucket it produces.

    Fields of another storage type are *refused* when they carry a value (a 400 naming the field)
    and accepted when empty, so a client may send back what it read (every field is present in a
    representation, empty when unused). Changing ``storage_type`` (only allowed while no target
    uses the bucket) starts the new type's settings afresh: the old type's settings and
    credentials are cleared.

Secrets
    ``access_key_id``, ``secret_access_key``, ``access_key`` and ``credentials_json`` are
    write-only: every representation shows ``hub.secrets.mask`` of them (``"********"`` when set,
    ``""`` when not). A PATCH that omits a secret, or sends the mask back unchanged, keeps the
    stored value. No validation message quotes a submitted secret.

Nothing here queries the database while representing an object: the viewsets select and
prefetch every relation used, and per-page extras (``deletion_error``) come in the context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.relations import PKOnlyObject
from rest_framework.validators import UniqueValidator

from hub.api.serializers.common import SafeJSONField, reject_nul_characters
from sites.api.serializers.common import KEEP, MaskedField, SecretField
from sites.models import Bucket, ExternalTarget, Site, Space
from sites.validators import (
    has_parent_reference,
    validate_absolute_path,
    validate_azure_key,
    validate_container,
    validate_gcs_bucket_name,
    validate_host,
    validate_region,
    validate_s3_bucket_name,
    validate_storage_account,
)

S3, AZURE, GCS, FS = (Bucket.StorageType.S3, Bucket.StorageType.AZURE, Bucket.StorageType.GCS,
                      Bucket.StorageType.FS)
SCHEMES = ("http", "https")
SECRET_FIELDS = Bucket.SECRET_FIELDS
# The bucket fields each storage type uses (``label``, ``advanced_settings`` and the type itself
# belong to every type).
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    S3: ("name", "endpoint", "port", "scheme", "region", "ssl_verify", "access_key_id", "secret_access_key"),
    AZURE: ("name", "storage_account", "container", "access_key", "endpoint", "port", "scheme", "ssl_verify"),
    GCS: ("name", "credentials_json", "credentials_file", "endpoint", "port", "scheme", "ssl_verify"),
    FS: ("name", "migration_target_folder"),
}
ALL_TYPE_FIELDS = tuple(dict.fromkeys(name for fields in TYPE_FIELDS.values() for name in fields))
# Longest service-account key file we accept (real ones are about 2.4 KiB).
MAX_CREDENTIALS_JSON = 64 * 1024
MAX_REGEX_LENGTH = 1000


def model_default(name: str) -> Any:
    """What an unused bucket field holds (the model's default, ``None`` for nullable ones)."""
    field = Bucket._meta.get_field(name)
    if field.null:
        return None
    return field.get_default()


def is_empty(name: str, value: Any) -> bool:
    """Whether ``value`` says nothing for field ``name`` (empty, null, the default, the mask)."""
    return value is KEEP or value in (None, "", {}) or value == model_default(name)


# --- validators (messages never quote a secret) ------------------------------------------------

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def validate_safe_name(value: str) -> None:
    if not _SAFE_NAME.match(value):
        raise serializers.ValidationError("Use letters, digits, '.', '_' and '-', starting with a letter or digit.")


def validate_regex(value: str) -> None:
    """``local_file_regex`` must compile with Python's ``re`` (the agent matches paths with it)."""
    try:
        re.compile(value)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise serializers.ValidationError(f"Not a valid regular expression: {exc.msg}{where}.") from None


def validate_service_account(value: Any) -> None:
    """A Google service account key (the JSON file's content); its values are never quoted."""
    if not isinstance(value, Mapping):
        raise serializers.ValidationError("Must be a JSON object: the content of the service account key file.")
    required = ("type", "project_id", "private_key", "client_email")
    missing = [key for key in required if not isinstance(value.get(key), str) or not value.get(key)]
    if missing:
        raise serializers.ValidationError(
            f"Not a service account key: missing or empty {', '.join(missing)}."
        )
    if value["type"] != "service_account":
        raise serializers.ValidationError("Not a service account key: 'type' must be 'service_account'.")
    key = value["private_key"]
    if "-----BEGIN" not in key or "PRIVATE KEY-----" not in key:
        raise serializers.ValidationError("Not a service account key: 'private_key' is not a PEM private key.")
    try:
        serializers.EmailField().run_validation(value["client_email"])
    except serializers.ValidationError:
        raise serializers.ValidationError(
            "Not a service account key: 'client_email' is not an e-mail address."
        ) from None


# --- fields --------------------------------------------------------------------------------------

@extend_schema_field({
    "oneOf": [
        {"type": "object", "additionalProperties": {}, "description": "Written: the service account key (JSON)"},
        {"type": "string", "description": "Read: the mask ('********' when set, '' when not)"},
    ],
})
class CredentialsJSONField(MaskedField):
    """The Google service account key: an object (or its JSON text) in, the mask out."""

    def to_secret(self, data: Any) -> Any:
        if data == "":
            return ""
        if isinstance(data, str):
            if len(data) > MAX_CREDENTIALS_JSON:
                raise serializers.ValidationError(f"Must be at most {MAX_CREDENTIALS_JSON} bytes of JSON.")
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError("Must be a JSON object (the service account key file).") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object (the service account key file).")
        if len(json.dumps(data)) > MAX_CREDENTIALS_JSON:
            raise serializers.ValidationError(f"Must be at most {MAX_CREDENTIALS_JSON} bytes of JSON.")
        reject_nul_characters(data)
        return data


class JSONObjectField(SafeJSONField):
    """``advanced_settings``: a JSON object (free-form keys the agent's driver understands)."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


# --- one serializer per storage type (validation of the merged bucket) ---------------------------

class _TypeSettings(serializers.Serializer):
    """Base of the per-type serializers."""


class _RemoteStoreSettings(_TypeSettings):
    """Where a network store is reached: an empty ``endpoint`` means the provider's own, an empty
    ``port`` the scheme's, and ``scheme`` defaults to https."""

    endpoint = serializers.CharField(required=False, allow_blank=True, max_length=255, validators=[validate_host])
    port = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=65535)
    scheme = serializers.ChoiceField(choices=SCHEMES, required=False, allow_blank=True, default="https")
    ssl_verify = serializers.BooleanField(required=False, default=True)

    def validate_scheme(self, value: str) -> str:
        return value or "https"


class S3BucketSettings(_RemoteStoreSettings):
    """Amazon S3 or S3-compatible: an empty ``endpoint`` means AWS (the region's endpoint)."""

    name = serializers.CharField(max_length=63, validators=[validate_s3_bucket_name])
    region = serializers.CharField(required=False, allow_blank=True, max_length=64, validators=[validate_region])
    access_key_id = serializers.CharField(max_length=256, trim_whitespace=False)
    secret_access_key = serializers.CharField(max_length=1024, trim_whitespace=False)


class AzureBucketSettings(_RemoteStoreSettings):
    """Azure Blob Storage: account, container and account key (``endpoint`` for emulators/sovereign clouds)."""

    name = serializers.CharField(max_length=255, validators=[validate_safe_name])
    storage_account = serializers.CharField(max_length=24, validators=[validate_storage_account])
    container = serializers.CharField(max_length=63, validators=[validate_container])
    access_key = serializers.CharField(max_length=1024, trim_whitespace=False, validators=[validate_azure_key])


class GCSBucketSettings(_RemoteStoreSettings):
    """Google Cloud Storage: a service account key, inline or as a file on the agent nodes."""

    name = serializers.CharField(max_length=222, validators=[validate_gcs_bucket_name])
    credentials_json = serializers.JSONField(required=False)
    credentials_file = serializers.CharField(required=False, allow_blank=True, max_length=4096,
                                             validators=[validate_absolute_path])

    def validate_credentials_json(self, value: Any) -> Any:
        if value in ("", None):
            return ""
        validate_service_account(value)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_json, has_file = bool(attrs.get("credentials_json")), bool(attrs.get("credentials_file"))
        if has_json and has_file:
            raise serializers.ValidationError(
                {"credentials_file": ["Give credentials_json or credentials_file, not both."]}
            )
        if not has_json and not has_file:
            raise serializers.ValidationError({"credentials_json": [
                "Give credentials_json (the service account key) or credentials_file "
                "(the absolute path of the key file on the site's agent nodes)."
            ]})
        return attrs


class FSBucketSettings(_TypeSettings):
    """A POSIX folder mounted on the agent nodes (an NFS export, a second filesystem)."""

    name = serializers.CharField(max_length=255, validators=[validate_safe_name])
    migration_target_folder = serializers.CharField(max_length=4096, validators=[validate_absolute_path])


TYPE_SERIALIZERS: dict[str, type[_TypeSettings]] = {
    S3: S3BucketSettings,
    AZURE: AzureBucketSettings,
    GCS: GCSBucketSettings,
    FS: FSBucketSettings,
}


def stored_type_values(bucket: Bucket) -> dict[str, Any]:
    """The stored values of the fields ``bucket``'s type uses, as the type serializer takes them."""
    values = {name: getattr(bucket, name) for name in TYPE_FIELDS[bucket.storage_type]}
    if "credentials_json" in values and values["credentials_json"]:
        values["credentials_json"] = json.loads(values["credentials_json"])
    return values


# --- buckets ------------------------------------------------------------------------------------

class BucketSerializer(serializers.ModelSerializer):
    """A bucket: location and credentials of one object store (or folder). Secrets are masked."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=255, required=False, help_text="Bucket name (required)")
    label = serializers.CharField(max_length=255, required=False, allow_blank=True, help_text="Bucket label")
    storage_type = serializers.ChoiceField(
        choices=Bucket.StorageType.choices,
        help_text="Type of external storage: s3 (S3 and S3-compatible), azure, gcs or fs (POSIX folder)",
    )
    endpoint = serializers.CharField(required=False, allow_blank=True, max_length=255,
                                     help_text="Hostname of the target storage service (empty: the provider's)")
    port = serializers.IntegerField(required=False, allow_null=True,
                                    help_text="Port of the target storage service (empty: the scheme's)")
    scheme = serializers.CharField(required=False, allow_blank=True, max_length=5,
                                   help_text="Connection protocol: http or https")
    region = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                   help_text="Region where the bucket is located")
    ssl_verify = serializers.BooleanField(required=False, help_text="Verify SSL certificate when connecting")
    access_key_id = SecretField(max_length=256, help_text="Access key ID for the storage service (write-only)")
    secret_access_key = SecretField(max_length=1024,
                                    help_text="Secret access key for the storage service (write-only)")
    storage_account = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                            help_text="Azure storage account name")
    container = serializers.CharField(required=False, allow_blank=True, max_length=63,
                                      help_text="Azure storage container")
    access_key = SecretField(max_length=1024, help_text="Azure-specific access key (write-only)")
    credentials_file = serializers.CharField(required=False, allow_blank=True, max_length=4096,
                                             help_text="JSON file containing Google Cloud credentials")
    credentials_json = CredentialsJSONField(help_text="JSON blob containing Google Cloud credentials (write-only)")
    migration_target_folder = serializers.CharField(
        required=False, allow_blank=True, max_length=4096,
        help_text="Filepath of migration target for FS storage type",
    )
    advanced_settings = JSONObjectField(required=False, help_text="Advanced settings for the target")
    soft_deleting = serializers.BooleanField(
        read_only=True, help_text="The bucket is soft-deleting. Remote tasks are still running."
    )
    external_targets = serializers.SerializerMethodField()
    deletion_error = serializers.SerializerMethodField(
        help_text="Why deleting the bucket is stuck (a removal from a site failed); null otherwise"
    )

    class Meta:
        model = Bucket
        fields = [
            "id", "name", "label", "storage_type", "endpoint", "port", "scheme", "region", "ssl_verify",
            "access_key_id", "secret_access_key", "storage_account", "container", "access_key",
            "credentials_file", "credentials_json", "migration_target_folder", "advanced_settings",
            "soft_deleting", "external_targets", "deletion_error",
        ]

    def get_external_targets(self, bucket: Bucket) -> list[int]:
        return sorted(target.pk for target in bucket.external_targets.all())

    def get_deletion_error(self, bucket: Bucket) -> str | None:
        if not bucket.soft_deleting:
            return None
        return self.context.get("deletion_errors", {}).get(bucket.pk)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Dispatch on the storage type; return every column value to write."""
        instance: Bucket | None = self.instance
        storage_type = attrs.get("storage_type", instance.storage_type if instance else None)
        type_changed = instance is not None and storage_type != instance.storage_type
        if type_changed and instance.external_targets.exists():
            raise serializers.ValidationError({"storage_type": [
                "The storage type of a bucket used by external targets cannot be changed: "
                "their migrated files live in the current store."
            ]})
        own = TYPE_FIELDS[storage_type]
        foreign = {
            name: [f"Not used by '{storage_type}' buckets: leave it out."]
            for name in ALL_TYPE_FIELDS
            if name not in own and name in attrs and not is_empty(name, attrs[name])
        }
        if foreign:
            raise serializers.ValidationError(foreign)

        merged: dict[str, Any] = {}
        if instance is not None:
            if type_changed:
                merged["name"] = instance.name
            else:
                merged.update(stored_type_values(instance))
        for name in own:
            if name not in attrs or attrs[name] is KEEP:
                continue
            merged[name] = "" if attrs[name] is None and name in SECRET_FIELDS else attrs[name]
        if storage_type == GCS:
            # Giving one kind of Google credentials replaces the other kind.
            for given, other in (("credentials_file", "credentials_json"), ("credentials_json", "credentials_file")):
                if attrs.get(given) and attrs.get(given) is not KEEP and not attrs.get(other):
                    merged[other] = ""
        # Drop nothing-values so the type serializer reports "required" rather than odd type errors.
        merged = {name: value for name, value in merged.items() if value is not None or name == "port"}

        settings = TYPE_SERIALIZERS[storage_type](data=merged)
        if not settings.is_valid():
            raise serializers.ValidationError(settings.errors)
        values = dict(settings.validated_data)
        if values.get("credentials_json"):
            values["credentials_json"] = json.dumps(values["credentials_json"], sort_keys=True)

        result: dict[str, Any] = {"storage_type": storage_type}
        for name in ("label", "advanced_settings"):
            if name in attrs:
                result[name] = attrs[name]
        for name in ALL_TYPE_FIELDS:
            if name in own:
                result[name] = values.get(name, model_default(name))
            elif instance is None or type_changed or not is_empty(name, getattr(instance, name)):
                # Clear what another type left behind (a credential must not outlive its use).
                result[name] = model_default(name)
        return result


# --- external targets ---------------------------------------------------------------------------

@extend_schema_field({
    "oneOf": [
        {"type": "integer", "description": "Written: the space id"},
        {
            "type": "object",
            "description": "Read: the space",
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string", "description": "Space Name"},
                "mountpoint": {"type": "string", "description": "Mount point"},
                "sites": {"type": "array", "items": {"type": "integer"}},
            },
        },
    ],
})
class SpaceField(serializers.PrimaryKeyRelatedField):
    """Written as a space id; read as ``{id, name, mountpoint, sites}`` (sites: prefetched placements)."""

    def use_pk_only_optimization(self) -> bool:
        return False

    def to_representation(self, space: Space) -> dict[str, Any]:
        return {
            "id": space.pk,
            "name": space.name,
            "mountpoint": space.mountpoint,
            "sites": sorted(placement.site_id for placement in space.placements.all()),
        }


class BucketInstanceField(serializers.PrimaryKeyRelatedField):
    """``bucket_instance``: the bucket's id; written under its own key so it cannot collide with ``bucket``."""

    def get_attribute(self, instance: ExternalTarget) -> PKOnlyObject:
        return PKOnlyObject(pk=instance.bucket_id)


TARGET_NAME_HELP = "Ngenea target name: letters, digits, '.', '_' and '-' (part of endpoint_name; cannot change)"


class ExternalTargetSerializer(serializers.HyperlinkedModelSerializer):
    """A target: which files of a space (``local_file_regex``) go to which bucket, on which sites."""

    id = serializers.IntegerField(read_only=True)
    url = serializers.HyperlinkedIdentityField(view_name="externaltarget-detail")
    name = serializers.CharField(
        max_length=200, help_text=TARGET_NAME_HELP,
        validators=[validate_safe_name, UniqueValidator(queryset=ExternalTarget.objects.all(),
                                                        message="An external target with this name exists.")],
    )
    space = SpaceField(queryset=Space.objects.all(), help_text="Space id (read: {id, name, mountpoint, sites})")
    bucket = BucketSerializer(required=False, help_text="Read: the bucket (secrets masked). Write: a new bucket.")
    bucket_instance = BucketInstanceField(queryset=Bucket.objects.all(), required=False,
                                          help_text="Associated bucket (id of an existing bucket)")
    local_file_regex = serializers.CharField(
        max_length=MAX_REGEX_LENGTH, trim_whitespace=False, validators=[validate_regex],
        help_text="Regex filter (Python syntax) to match files for migration to this target",
    )
    available_on_sites = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Site.objects.all(), required=False,
        help_text="Sites where this target is available (sites of the space; default: all of them)",
    )
    configured_on_sites = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Sites whose agent confirmed the target's current configuration",
    )
    backup_site = serializers.PrimaryKeyRelatedField(
        queryset=Site.objects.all(), required=False, allow_null=True,
        help_text="Site which claimed this target for backup (one of available_on_sites)",
    )
    advanced_settings = JSONObjectField(required=False, help_text="Advanced settings for the target")
    endpoint_name = serializers.CharField(read_only=True)
    is_ready = serializers.SerializerMethodField(
        help_text="Every site of available_on_sites confirmed the configuration (false on no site)"
    )

    class Meta:
        model = ExternalTarget
        fields = [
            "id", "url", "name", "space", "bucket", "bucket_instance", "local_file_regex", "available_on_sites",
            "configured_on_sites", "backup_only", "backup_site", "delete_on_recall", "enabled",
            "advanced_settings", "endpoint_name", "is_ready",
        ]
        extra_kwargs = {
            "backup_only": {"help_text": "Mark this target as backup only"},
            "delete_on_recall": {"help_text": "Delete files from the external storage on recall"},
            "enabled": {"help_text": "Whether this target is enabled. Default is true"},
        }

    def to_representation(self, target: ExternalTarget) -> dict[str, Any]:
        data = super().to_representation(target)
        # Ids in one order whether the sites were prefetched (by id) or not (by name).
        for name in ("available_on_sites", "configured_on_sites"):
            data[name] = sorted(data[name])
        return data

    def get_is_ready(self, target: ExternalTarget) -> bool:
        available = {site.pk for site in target.available_on_sites.all()}
        configured = {site.pk for site in target.configured_on_sites.all()}
        return bool(available) and available <= configured

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: ExternalTarget | None = self.instance
        errors: dict[str, list[str]] = {}
        if instance is None:
            if ("bucket" in attrs) == ("bucket_instance" in attrs):
                errors["bucket_instance"] = [
                    "Give exactly one of 'bucket_instance' (the id of an existing bucket) "
                    "or 'bucket' (a new bucket to create)."
                ]
            elif "bucket_instance" in attrs and attrs["bucket_instance"].soft_deleting:
                errors["bucket_instance"] = ["This bucket is being deleted: it cannot get new targets."]
        else:
            # The name is part of endpoint_name, and the space and bucket say where migrated files
            # are: changing any of them would orphan the stubs already pointing at the target.
            if "name" in attrs and attrs["name"] != instance.name:
                errors["name"] = ["A target's name cannot change (it is part of its endpoint name)."]
            if "space" in attrs and attrs["space"].pk != instance.space_id:
                errors["space"] = ["A target's space cannot change: create a new target."]
            if "bucket_instance" in attrs and attrs["bucket_instance"].pk != instance.bucket_id:
                errors["bucket_instance"] = ["A target's bucket cannot change: create a new target."]
            if "bucket" in attrs:
                errors["bucket"] = ["A target's bucket cannot be replaced; change the bucket at /api/buckets/."]
        if errors:
            raise serializers.ValidationError(errors)

        space: Space = attrs.get("space") or instance.space
        space_sites = set(space.placements.values_list("site_id", flat=True))
        if "available_on_sites" in attrs:
            sites = list({site.pk: site for site in attrs["available_on_sites"]}.values())
            strangers = sorted(site.name for site in sites if site.pk not in space_sites)
            if strangers:
                raise serializers.ValidationError({"available_on_sites": [
                    f"Not a site of space '{space.name}': {', '.join(strangers)}."
                ]})
            attrs["available_on_sites"] = sites
            site_ids = {site.pk for site in sites}
        elif instance is not None:
            site_ids = {site.pk for site in instance.available_on_sites.all()}
        else:
            site_ids = space_sites
        backup_site = attrs.get("backup_site", instance.backup_site if instance else None)
        if backup_site is not None and backup_site.pk not in site_ids:
            raise serializers.ValidationError(
                {"backup_site": ["Must be one of the sites the target is available on."]}
            )
        return attrs


# --- /external_targets/{id}/files/ --------------------------------------------------------------

class TargetFilesQuerySerializer(serializers.Serializer):
    """Query parameters of a remote listing."""

    path = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=4096, trim_whitespace=False,
        help_text="Target remote path or prefix; may be a glob such as 'aws/cats*.jpg' (globs are not recursive)",
    )
    max_items = serializers.IntegerField(
        required=False, min_value=1, max_value=1000,
        help_text="Maximum number of items to retrieve per page (default: configuration maximum_external_results)",
    )
    marker = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=1024, trim_whitespace=False,
        help_text="next_marker of the previous page",
    )

    def validate_path(self, value: str) -> str:
        if has_parent_reference(value):
            raise serializers.ValidationError("Must not contain '..'.")
        return value.lstrip("/")


class RemoteEntrySerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True, max_length=4096, trim_whitespace=False)
    path = serializers.CharField(allow_blank=True, max_length=8192, trim_whitespace=False)
    size = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    type = serializers.CharField(max_length=32)


class RemoteListingSerializer(serializers.Serializer):
    """One page of a target's remote listing (the agent's ``ListTargetOrder`` answer, validated)."""

    path = serializers.CharField(allow_blank=True, max_length=8192, trim_whitespace=False)
    marker = serializers.CharField(allow_blank=True, allow_null=True, max_length=4096, trim_whitespace=False,
                                   required=False, default="")
    next_marker = serializers.CharField(allow_blank=True, allow_null=True, max_length=4096, trim_whitespace=False,
                                        help_text="Marker of the next page; empty on the last page")
    files = RemoteEntrySerializer(many=True, max_length=10_000)
    directories = RemoteEntrySerializer(many=True, max_length=10_000)
    summary = JSONObjectField(required=False, default=dict)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        value["marker"] = value.get("marker") or ""
        value["next_marker"] = value.get("next_marker") or ""
        return value
