"""Serializers of the catalog: inventory (read-only), data stores, IP addresses, site links,
file status types and tags.

Field names follow the API reference exactly; fields the reference does not list (``url`` on
inventory rows, ``site_name``, ``fstype``...) are additive extras and marked as such below.
No serializer here queries the database in ``to_representation``: the viewsets select the
related rows they show.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from django.urls import reverse
from rest_framework import serializers

from sites.api.serializers.common import KEEP, SecretField, as_drf
from sites.models import (
    DataStore,
    Fileset,
    FileStatusType,
    Filesystem,
    IPAddress,
    Server,
    Site,
    SiteLink,
    StoragePool,
    Tag,
)
from sites.validators import (
    clean_absolute_path,
    clean_relative_or_absolute_path,
    problem,
    validate_absolute_path,
    validate_azure_key,
    validate_container,
    validate_gcs_bucket_name,
    validate_nfs_endpoint,
    validate_region,
    validate_s3_bucket_name,
    validate_smb_endpoint,
    validate_storage_account,
    validate_url_endpoint,
)

# --- inventory (read-only: written only by the agent's inventory report) ------------------------


class ServerSerializer(serializers.ModelSerializer):
    """A host of a site's cluster. ``site`` is the site's id, as in the reference."""

    url = serializers.HyperlinkedIdentityField(view_name="server-detail")
    site_name = serializers.CharField(source="site.name", read_only=True)  # extra

    class Meta:
        model = Server
        fields = ["id", "url", "name", "site", "site_name", "list_of_interfaces"]
        read_only_fields = fields


class StoragePoolSerializer(serializers.ModelSerializer):
    """A pool of a filesystem. ``filesystem`` is its name and ``site`` an id, as in the reference."""

    url = serializers.HyperlinkedIdentityField(view_name="storagepool-detail")
    filesystem = serializers.CharField(source="filesystem.name", read_only=True)
    filesystem_id = serializers.IntegerField(read_only=True)  # extra
    site_name = serializers.CharField(source="site.name", read_only=True)  # extra

    class Meta:
        model = StoragePool
        fields = ["id", "url", "name", "filesystem", "filesystem_id", "site", "site_name", "capacity",
                  "used_space", "free_space", "is_default"]
        read_only_fields = fields


class FilesystemSerializer(serializers.ModelSerializer):
    """A mounted filesystem. ``site`` is the site's *name* here, as in the reference."""

    url = serializers.HyperlinkedIdentityField(view_name="filesystem-detail")
    site = serializers.CharField(source="site.name", read_only=True)
    site_id = serializers.IntegerField(read_only=True)  # extra

    class Meta:
        model = Filesystem
        fields = ["id", "url", "name", "mountpoint", "site", "site_id", "fstype", "capacity", "used_space",
                  "free_space"]
        read_only_fields = fields


class FilesetSerializer(serializers.ModelSerializer):
    """One row of ``GET /api/filesets/?site=``; ``filesystem`` is the filesystem's name."""

    filesystem = serializers.CharField(source="filesystem.name", read_only=True)

    class Meta:
        model = Fileset
        fields = ["id", "name", "filesystem", "path", "status", "block_quota", "block_usage", "files_quota",
                  "files_usage"]
        read_only_fields = fields


class FilesetQuerySerializer(serializers.Serializer):
    """The query string of ``GET /api/filesets/``: the site is required (name, or id)."""

    site = serializers.CharField(max_length=100, help_text="Site name")


# --- data stores ---------------------------------------------------------------------------------


def clean_folder(value: str) -> str:
    """A folder on the agents: absolute, normalised (``//`` and ``.`` dropped), not ``/``."""
    return clean_absolute_path(value, resolve_dots=True)


SECRET_FIELDS = ("accesskeyid", "secretaccesskey", "accesskey")
_TYPED_FIELDS = ("endpoint", "bucket", "region", "storageaccount", "container", "credentialsfile", *SECRET_FIELDS)
T = DataStore.Type

# Which fields each type uses. A value for a field the type does not use is refused (it would be
# silently ignored by the agent), and switching type clears the fields the new type does not use,
# so no stale credential of the old type stays in the database.
TYPE_FIELDS: dict[str, frozenset[str]] = {
    T.S3: frozenset({"endpoint", "region", "bucket", "accesskeyid", "secretaccesskey"}),
    T.AZURE: frozenset({"endpoint", "storageaccount", "container", "accesskey"}),
    T.GCS: frozenset({"endpoint", "bucket", "credentialsfile"}),
    T.NFS: frozenset({"endpoint"}),
    T.SMB: frozenset({"endpoint"}),
    T.FS: frozenset({"bucket"}),
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    T.S3: ("bucket", "accesskeyid", "secretaccesskey"),  # plus endpoint or region
    T.AZURE: ("storageaccount", "container", "accesskey"),
    T.GCS: ("bucket",),
    T.NFS: ("endpoint",),
    T.SMB: ("endpoint",),
    T.FS: ("bucket",),
}
# The same naming rules as buckets (sites.validators); a data store's endpoint is one string.
ENDPOINT_CHECKS: dict[str, Callable[[str], Any]] = {T.NFS: validate_nfs_endpoint, T.SMB: validate_smb_endpoint}
BUCKET_CHECKS: dict[str, Callable[[str], Any]] = {
    T.S3: validate_s3_bucket_name,
    T.GCS: validate_gcs_bucket_name,
    T.FS: clean_folder,
}


class DataStoreSerializer(serializers.ModelSerializer):
    """An external storage endpoint, validated per ``type``.

    What each type needs (everything else of the type is optional; fields of other types must be
    empty):

    * ``s3``: ``bucket`` (S3 naming rules), ``accesskeyid`` and ``secretaccesskey``, and an
      ``endpoint`` (``host[:port]`` or ``http(s)://host[:port]``, for S3-compatible stores) or a
      ``region`` (AWS), or both.
    * ``azure``: ``storageaccount`` (3-24 lowercase letters/digits), ``container`` (Azure naming
      rules) and ``accesskey`` (the account's base64 key); ``endpoint`` optional (Azurite,
      sovereign clouds).
    * ``gcs``: ``bucket`` (GCS naming rules); ``credentialsfile`` optional (an absolute,
      normalised path *on the agents* to a service-account file; without it the agents use
      their ambient credentials); ``endpoint`` optional (emulators).
    * ``nfs``: ``endpoint`` as ``host`` or ``host:/export``.
    * ``smb``: ``endpoint`` as ``host`` or ``//host/share``.
    * ``fs``: ``bucket`` is the folder, an absolute path on the agents (normalised, no ``..``,
      not ``/``).

    Names, hosts and paths follow the same rules as buckets' (``sites.validators``).
    Credentials (``accesskeyid``, ``secretaccesskey``, ``accesskey``) are write-only, exactly
    like a bucket's (``SecretField``): stored encrypted, answered masked, kept when a PATCH
    omits them (or sends the mask back).
    """

    url = serializers.HyperlinkedIdentityField(view_name="datastore-detail")
    accesskeyid = SecretField(max_length=4096, allow_null=False)
    secretaccesskey = SecretField(max_length=4096, allow_null=False)
    accesskey = SecretField(max_length=4096, allow_null=False)

    class Meta:
        model = DataStore
        fields = ["id", "url", "name", "type", "endpoint", "bucket", "region", "accesskeyid", "secretaccesskey",
                  "storageaccount", "container", "accesskey", "credentialsfile"]
        read_only_fields = ["id", "url"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The mask sent back means "keep what is stored", exactly as if the field were omitted.
        attrs = {field: value for field, value in attrs.items() if value is not KEEP}
        instance: DataStore | None = self.instance
        store_type = attrs.get("type", instance.type if instance else None)
        used = TYPE_FIELDS[store_type]
        errors: dict[str, list[str]] = {}

        for field in _TYPED_FIELDS:
            if field not in used and attrs.get(field):
                errors[field] = [f"Does not apply to a data store of type '{store_type}'."]

        # The state after this request: what is sent, else what is stored (unless the type changes
        # and the stored value belongs to the old type).
        def current(field: str) -> str:
            if field in attrs:
                return attrs[field]
            if instance is None or field not in used:
                return ""
            return getattr(instance, field)

        for field in REQUIRED_FIELDS[store_type]:
            if not current(field) and field not in errors:
                errors[field] = [f"Required for a data store of type '{store_type}'."]
        if store_type == T.S3 and not (current("endpoint") or current("region")):
            errors.setdefault("endpoint", []).append("An S3 data store needs an endpoint or a region.")

        checks: dict[str, Callable[[str], Any]] = {
            "endpoint": ENDPOINT_CHECKS.get(store_type, validate_url_endpoint),
            "bucket": BUCKET_CHECKS.get(store_type, lambda value: None),
            "region": validate_region,
            "storageaccount": validate_storage_account,
            "container": validate_container,
            "accesskey": validate_azure_key,
            "credentialsfile": validate_absolute_path,
        }
        # A value kept from another type must also suit the new type (an S3 bucket name is not a
        # folder), so on a type change the stored values are checked as if they had been sent.
        type_changes = instance is not None and store_type != instance.type
        for field, check in checks.items():
            value = current(field) if type_changes else attrs.get(field)
            if value and field not in errors:
                message = problem(check, value)
                if message:
                    errors[field] = [message]
        if errors:
            raise serializers.ValidationError(errors)

        if store_type == T.FS and current("bucket"):
            attrs["bucket"] = clean_folder(current("bucket"))
        if type_changes:
            for field in _TYPED_FIELDS:
                if field not in used:
                    attrs[field] = ""
        return attrs


class DataStoreField(serializers.PrimaryKeyRelatedField):
    """Written as an id, read as ``{id, name, url}`` (the reference's two shapes)."""

    def use_pk_only_optimization(self) -> bool:
        return False

    def to_representation(self, value: DataStore) -> dict[str, Any]:
        request = self.context.get("request")
        url = reverse("datastore-detail", args=[value.pk])
        return {"id": value.pk, "name": value.name, "url": request.build_absolute_uri(url) if request else url}


class IPAddressSerializer(serializers.ModelSerializer):
    """An IPv4 address of a data store, unique within the data store, stored in canonical form."""

    url = serializers.HyperlinkedIdentityField(view_name="ipaddress-detail")
    datastore = DataStoreField(queryset=DataStore.objects.all())
    ipaddr = serializers.CharField(max_length=64, help_text="IP Address (IPv4)")

    class Meta:
        model = IPAddress
        fields = ["id", "url", "ipaddr", "datastore"]
        read_only_fields = ["id", "url"]
        validators: list = []  # the duplicate check below names the field and the data store

    def validate_ipaddr(self, value: str) -> str:
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            raise serializers.ValidationError("Enter a valid IPv4 address, such as 192.0.2.10.") from None
        if address.version == 6:
            raise serializers.ValidationError("IPv6 addresses are not supported; enter an IPv4 address.")
        if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
            raise serializers.ValidationError("Enter the unicast address of a host, not 0.0.0.0, multicast "
                                              "or broadcast.")
        return str(address)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        datastore = attrs.get("datastore", getattr(self.instance, "datastore", None))
        ipaddr = attrs.get("ipaddr", getattr(self.instance, "ipaddr", None))
        taken = IPAddress.objects.filter(datastore=datastore, ipaddr=ipaddr)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError(
                {"ipaddr": [f"{ipaddr} is already an address of data store '{datastore.name}'."]}
            )
        return attrs


class SiteLinkSerializer(serializers.ModelSerializer):
    """A directory of a site linked to a path on a data store; site and data store by name.

    ``site_path`` is absolute and normalised; ``datastore_path`` is a key prefix or a folder; both
    refuse ``..``. ``site_id`` and ``datastore_id`` are read-only extras for clients that filter.
    """

    url = serializers.HyperlinkedIdentityField(view_name="sitelink-detail")
    site = serializers.SlugRelatedField(slug_field="name", queryset=Site.objects.all())
    datastore = serializers.SlugRelatedField(slug_field="name", queryset=DataStore.objects.all())
    site_id = serializers.IntegerField(read_only=True)  # extra
    datastore_id = serializers.IntegerField(read_only=True)  # extra

    class Meta:
        model = SiteLink
        fields = ["id", "url", "site", "site_id", "site_path", "datastore", "datastore_id", "datastore_path"]
        read_only_fields = ["id", "url"]
        validators: list = []  # the duplicate check below says which link already exists

    def validate_site_path(self, value: str) -> str:
        return as_drf(clean_folder, value)

    def validate_datastore_path(self, value: str) -> str:
        normalised = as_drf(clean_relative_or_absolute_path, value)
        if not normalised:
            raise serializers.ValidationError("Use '/' for the root of the data store.")
        return normalised

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        values = {
            name: attrs.get(name, getattr(self.instance, name, None)) for name in ("site", "datastore", "site_path")
        }
        taken = SiteLink.objects.filter(**values)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError({"site_path": [
                f"{values['site_path']} of site '{values['site'].name}' is already linked to data store "
                f"'{values['datastore'].name}'."
            ]})
        return attrs


# --- file status types and tags ------------------------------------------------------------------


class FileStatusTypeSerializer(serializers.ModelSerializer):
    """How the UI shows an HSM state. The key is fixed (agents report states by key); colours are
    stored lowercase as given (``#abc`` or ``#aabbcc``)."""

    url = serializers.HyperlinkedIdentityField(view_name="filestatustype-detail", lookup_field="key")

    class Meta:
        model = FileStatusType
        fields = ["key", "label", "background_color", "text_color", "url"]
        read_only_fields = ["key", "url"]

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict) and self.instance is not None and "key" in data and data["key"] != self.instance.key:
            # DRF would silently ignore a read-only field; a client trying to rename must be told.
            raise serializers.ValidationError({"key": ["The key of a file status type cannot be changed."]})
        return super().to_internal_value(data)

    def validate_background_color(self, value: str) -> str:
        return value.lower()

    def validate_text_color(self, value: str) -> str:
        return value.lower()


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["name"]


class TagQuerySerializer(serializers.Serializer):
    filter = serializers.CharField(required=False, allow_blank=True, max_length=255,
                                   help_text="Substring that returned tags must contain (case-insensitive)")
