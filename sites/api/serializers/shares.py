"""NFS exports and SMB shares as the API reference shapes them.

Syntax rules live in ``sites.shares`` (hosts, options, names, modes) and ``sites.validators``
(paths); the checks that need the database (path inside the space, unique names and fsids, one
export per path and site, SMB ``on_sites`` among the space's sites) are here, so a refusal is a
400 naming the field before anything is written.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from rest_framework import serializers

from hub.api.serializers.common import SafeJSONField
from sites.api.serializers.common import as_drf
from sites.models import NfsClient, NfsShare, SmbShare, Space
from sites.shares import (
    duplicates,
    validate_list,
    validate_nfs_host,
    validate_nfs_options,
    validate_octal_mode,
    validate_smb_host,
    validate_smb_options,
    validate_smb_share_name,
    validate_smb_user,
)
from sites.validators import CONTROL_CHARACTERS, clean_absolute_path, is_inside

# exports(5) takes any unsigned 32-bit id except (uid_t) -1, which means "no id".
MAX_NFS_ID = 2**32 - 2
MAX_FSID = 2**31 - 1
MAX_CLIENTS = 256


class _ShareMixin:
    """Path and space rules common to NFS and SMB shares."""

    instance: Any

    def validate_path(self, value: str) -> str:
        return as_drf(clean_absolute_path, value)

    def _space_and_path(self, attrs: dict[str, Any]) -> tuple[Space, str]:
        instance = self.instance
        space: Space = attrs.get("space", instance.space if instance is not None else None)
        if instance is not None and "space" in attrs and attrs["space"].pk != instance.space_id:
            raise serializers.ValidationError(
                {"space": ["A share cannot move to another space; create a share there and delete this one."]}
            )
        path = attrs.get("path", instance.path if instance is not None else space.mountpoint)
        if not is_inside(path, space.mountpoint):
            raise serializers.ValidationError(
                {"path": [f"'{path}' is outside space '{space.name}': give '{space.mountpoint}' or a path below it."]}
            )
        attrs["path"] = path
        return space, path


class NfsClientSerializer(serializers.ModelSerializer):
    """One client line of an export: who (``hosts``) and how (the flags become export options)."""

    hosts = serializers.CharField(max_length=255, help_text="Address, network, host name, *.domain, @netgroup or *")
    anonymous_user_id = serializers.IntegerField(min_value=0, max_value=MAX_NFS_ID, allow_null=True, required=False)
    anonymous_group_id = serializers.IntegerField(min_value=0, max_value=MAX_NFS_ID, allow_null=True, required=False)
    advanced_settings = SafeJSONField(required=False, help_text="Extra export options from the safe list, "
                                                                "e.g. {\"sec\": \"krb5p\", \"crossmnt\": true}")

    class Meta:
        model = NfsClient
        fields = ["id", "uuid", "nfs_share", "hosts", "read_only", "subtree_check", "asynchronous", "write_delay",
                  "insecure_ports", "force_root_user_id", "force_all_user_id", "anonymous_user_id",
                  "anonymous_group_id", "advanced_settings"]
        read_only_fields = ["id", "uuid", "nfs_share"]

    def validate_hosts(self, value: str) -> str:
        return as_drf(validate_nfs_host, value)

    def validate_advanced_settings(self, value: Any) -> dict[str, Any]:
        return as_drf(validate_nfs_options, value)


class NfsShareSerializer(_ShareMixin, serializers.ModelSerializer):
    """An NFS export of ``path`` (default: the space's mountpoint). Writing ``clients`` replaces
    the whole client list; at least one client is required."""

    name = serializers.CharField(max_length=100, required=False, allow_blank=True,
                                 help_text="For identification only; NFS clients do not see it")
    path = serializers.CharField(max_length=4096, required=False, trim_whitespace=False)
    fsid = serializers.IntegerField(min_value=1, max_value=MAX_FSID, allow_null=True, required=False,
                                    help_text="Unique filesystem id of the export (0 is the NFSv4 root: not allowed)")
    space = serializers.PrimaryKeyRelatedField(queryset=Space.objects.all())
    clients = NfsClientSerializer(many=True, allow_empty=False, max_length=MAX_CLIENTS)

    class Meta:
        model = NfsShare
        fields = ["clients", "fsid", "id", "name", "path", "space", "uuid"]
        read_only_fields = ["id", "uuid"]
        validators: list = []  # (space, path) is checked in validate() across the space's sites

    def validate_name(self, value: str) -> str:
        if CONTROL_CHARACTERS.search(value):
            raise serializers.ValidationError("The name cannot contain control characters.")
        return value

    def validate_clients(self, clients: list[dict[str, Any]]) -> list[dict[str, Any]]:
        repeated = duplicates(client["hosts"] for client in clients)
        if repeated:
            raise serializers.ValidationError(f"Hosts given for more than one client: {', '.join(repeated)}.")
        return clients

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        space, path = self._space_and_path(attrs)
        others = NfsShare.objects.exclude(pk=self.instance.pk) if self.instance is not None else NfsShare.objects
        # One path is exported once per site: exportfs merges or rejects a second entry, and two
        # spaces (nested) can hold the same path on one site.
        clash = (
            others.filter(path=path)
            .filter(Q(space=space) | Q(space__placements__site__in=space.sites.all()))
            .values_list("name", "space__name").first()
        )
        if clash is not None:
            label = f"'{clash[0]}'" if clash[0] else "another export"
            raise serializers.ValidationError(
                {"path": [f"'{path}' is already exported by {label} of space '{clash[1]}' on a site of this space."]}
            )
        fsid = attrs.get("fsid")
        if fsid is not None and others.filter(fsid=fsid).exists():
            raise serializers.ValidationError({"fsid": [f"fsid {fsid} is used by another export."]})
        return attrs


class SmbShareSerializer(_ShareMixin, serializers.ModelSerializer):
    """An SMB share of ``path`` (default: the space's mountpoint), published on ``on_sites``
    (site names among the space's sites; empty: all of them)."""

    name = serializers.CharField(max_length=80, trim_whitespace=False)
    path = serializers.CharField(max_length=4096, required=False, trim_whitespace=False)
    space = serializers.PrimaryKeyRelatedField(queryset=Space.objects.all())
    hosts_allow = serializers.ListField(child=serializers.CharField(max_length=255), required=False, max_length=256)
    hosts_deny = serializers.ListField(child=serializers.CharField(max_length=255), required=False, max_length=256)
    admin_users = serializers.ListField(child=serializers.CharField(max_length=256), required=False, max_length=256)
    allowed_users = serializers.ListField(child=serializers.CharField(max_length=256), required=False,
                                          max_length=256, help_text="Users and @groups allowed (empty: anyone)")
    on_sites = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=1000)
    create_mask = serializers.CharField(max_length=4, required=False)
    directory_mask = serializers.CharField(max_length=4, required=False)
    force_create_mode = serializers.CharField(max_length=4, required=False)
    force_directory_mode = serializers.CharField(max_length=4, required=False)
    advanced_settings = SafeJSONField(required=False, help_text="Extra smb.conf parameters from the safe list")

    class Meta:
        model = SmbShare
        fields = ["admin_users", "advanced_settings", "allowed_users", "create_mask", "directory_mask",
                  "force_create_mode", "force_directory_mode", "guest_ok", "hosts_allow", "hosts_deny",
                  "hsm_support", "id", "multi_thread_reads", "multi_thread_writes", "name", "on_sites", "path",
                  "read_only", "root_share_locking", "space", "uuid", "visible"]
        read_only_fields = ["id", "uuid"]

    def validate_name(self, value: str) -> str:
        value = as_drf(validate_smb_share_name, value)
        others = SmbShare.objects.exclude(pk=self.instance.pk) if self.instance is not None else SmbShare.objects
        if others.filter(name__iexact=value).exists():
            raise serializers.ValidationError(f"An SMB share named '{value}' already exists (names ignore case).")
        return value

    def validate_hosts_allow(self, value: list[str]) -> list[str]:
        return as_drf(lambda v: validate_list(v, validate_smb_host, what="hosts"), value)

    def validate_hosts_deny(self, value: list[str]) -> list[str]:
        return as_drf(lambda v: validate_list(v, validate_smb_host, what="hosts"), value)

    def validate_admin_users(self, value: list[str]) -> list[str]:
        return as_drf(lambda v: validate_list(v, validate_smb_user, what="users"), value)

    def validate_allowed_users(self, value: list[str]) -> list[str]:
        return as_drf(lambda v: validate_list(v, validate_smb_user, what="users"), value)

    def validate_create_mask(self, value: str) -> str:
        return as_drf(validate_octal_mode, value)

    def validate_directory_mask(self, value: str) -> str:
        return as_drf(validate_octal_mode, value)

    def validate_force_create_mode(self, value: str) -> str:
        return as_drf(validate_octal_mode, value)

    def validate_force_directory_mode(self, value: str) -> str:
        return as_drf(validate_octal_mode, value)

    def validate_advanced_settings(self, value: Any) -> dict[str, Any]:
        return as_drf(validate_smb_options, value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        space, _ = self._space_and_path(attrs)
        if "on_sites" in attrs:
            names = list(dict.fromkeys(attrs["on_sites"]))
            known = set(space.sites.values_list("name", flat=True))
            unknown = [name for name in names if name not in known]
            if unknown:
                raise serializers.ValidationError({"on_sites": [
                    f"Not a site of space '{space.name}': {', '.join(unknown)} "
                    f"(its sites: {', '.join(sorted(known)) or 'none'})."
                ]})
            attrs["on_sites"] = names
        return attrs
