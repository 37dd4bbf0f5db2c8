"""Users, groups and permissions as the API reference shapes them."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hub import permissions
from hub.models import NasGroup, NasUser, Profile
from sites.models import Site

User = get_user_model()
TIMEZONES = frozenset(zoneinfo.available_timezones())


def _absolute(request, url: str) -> str:
    return request.build_absolute_uri(url) if request is not None else url


class GroupRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    url = serializers.SerializerMethodField()

    def get_url(self, group: Group) -> str:
        return _absolute(self.context.get("request"), reverse("group-detail", args=[group.pk]))


class NasUserSerializer(serializers.ModelSerializer):
    uid = serializers.IntegerField(read_only=True, help_text="UID number for the user. Allocated automatically; "
                                                               "cannot be changed.")
    primary_group = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all())

    class Meta:
        model = NasUser
        fields = ["uid", "primary_group", "allow_ssh"]

    def validate_primary_group(self, group: Group) -> Group:
        if not NasGroup.objects.filter(group=group).exists():
            raise serializers.ValidationError(f"Group '{group.name}' is not a NAS group (it has no gid).")
        return group


class ProfileSerializer(serializers.ModelSerializer):
    default_site = serializers.PrimaryKeyRelatedField(queryset=Site.objects.all(), allow_null=True, required=False)
    home_site = serializers.PrimaryKeyRelatedField(queryset=Site.objects.all(), allow_null=True, required=False)

    class Meta:
        model = Profile
        fields = ["country", "default_site", "department", "home_site", "line_manager", "phone", "timezone"]
        extra_kwargs = {
            "country": {"help_text": "User's country"},
            "department": {"help_text": "Name of the department user is working in"},
            "line_manager": {"help_text": "Name of the line manager of the user"},
            "phone": {"help_text": "User's phone number"},
            "timezone": {"help_text": "Timezone in a string format e.g. 'Europe/London'"},
        }

    def validate_timezone(self, value: str) -> str:
        if value and value not in TIMEZONES:
            raise serializers.ValidationError(f"'{value}' is not an IANA time zone name such as 'Europe/London'.")
        return value


_EMPTY_PROFILE = {name: ("" if name not in ("default_site", "home_site") else None)
                  for name in ProfileSerializer.Meta.fields}


class UserSerializer(serializers.ModelSerializer):
    """A hub user. ``password`` is write-only; ``is_active`` changes through activate/deactivate."""

    url = serializers.HyperlinkedIdentityField(view_name="user-detail", lookup_field="username")
    password = serializers.CharField(write_only=True, style={"input_type": "password"}, max_length=128,
                                     trim_whitespace=False)
    groups = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), many=True,
                                          required=False)
    nas_user = NasUserSerializer(required=False, allow_null=True)
    profile = ProfileSerializer(required=False)

    class Meta:
        model = User
        fields = ["id", "url", "username", "password", "email", "first_name", "last_name", "is_active",
                  "date_joined", "last_login", "groups", "nas_user", "profile"]
        read_only_fields = ["id", "is_active", "date_joined", "last_login"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            fields["password"].required = False
            fields["username"].read_only = True  # the URL names the user; renaming would break links
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        password = attrs.get("password")
        if password is not None:
            candidate = self.instance or User(username=attrs.get("username", ""), email=attrs.get("email", ""))
            try:
                password_validation.validate_password(password, candidate)
            except DjangoValidationError as exc:
                raise serializers.ValidationError({"password": list(exc.messages)}) from None
        if "nas_user" in attrs and attrs["nas_user"] is None:
            raise serializers.ValidationError({"nas_user": ["A NAS account cannot be removed, only changed."]})
        return attrs

    def to_representation(self, user) -> dict[str, Any]:
        # Nested dicts are built here rather than through nested serializers: this runs once per
        # row of a streamed listing, and a serializer instance per row costs more than the query.
        data = super().to_representation(user)
        request = self.context.get("request")
        data["groups"] = [
            {"id": group.pk, "name": group.name,
             "url": _absolute(request, reverse("group-detail", args=[group.pk]))}
            for group in user.groups.all()
        ]
        data.setdefault("profile", dict(_EMPTY_PROFILE))
        data.setdefault("nas_user", None)
        return data


class ChangePasswordSerializer(serializers.Serializer):
    old_password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)
    new_password = serializers.CharField(write_only=True, max_length=128, trim_whitespace=False)


class GroupMemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["username", "email", "first_name", "last_name", "date_joined", "last_login"]


class ObjectPermissionSerializer(serializers.Serializer):
    """``{model, object_pk, permission}``: one object-level grant held by a group."""

    model = serializers.CharField(max_length=200, help_text="Model name, e.g. 'space' or 'sites.space'")
    object_pk = serializers.CharField(max_length=255)
    permission = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="Permission id")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        content_type = permissions.resolve_model(attrs["model"])
        if content_type is None or content_type.model_class() is None:
            raise serializers.ValidationError({"model": [f"Unknown model '{attrs['model']}'."]})
        permission = Permission.objects.filter(pk=attrs["permission"]).first()
        if permission is None:
            raise serializers.ValidationError({"permission": ["Unknown permission id."]})
        if permission.content_type_id != content_type.id:
            raise serializers.ValidationError(
                {"permission": [f"Permission '{permission.codename}' does not apply to '{content_type.model}'."]}
            )
        model_class = content_type.model_class()
        try:
            obj = model_class._default_manager.filter(pk=attrs["object_pk"]).first()
        except (ValueError, TypeError, DjangoValidationError):
            obj = None
        if obj is None:
            raise serializers.ValidationError({"object_pk": [f"No {content_type.model} with this key."]})
        return {"model": content_type.model, "object_pk": str(obj.pk), "permission": permission.pk,
                "resolved": (permission, obj)}


@extend_schema_field({"oneOf": [{"type": "boolean"}, {"type": "object", "properties": {"gid": {"type": "integer"}}}],
                      "nullable": True})
class NasGroupField(serializers.Field):
    """Writes as a boolean (make this a NAS group or not); reads as ``{"gid": n}`` or null."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            raise serializers.ValidationError("Must be true or false.")
        return data

    def get_attribute(self, group):
        try:
            return group.nas_group
        except ObjectDoesNotExist:
            return None

    def to_representation(self, nas_group: NasGroup | None):
        return {"gid": nas_group.gid} if nas_group is not None else None


class GroupSerializer(serializers.ModelSerializer):
    description = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                        source="detail.description", default="")
    nas_group = NasGroupField(required=False, allow_null=True,
                              help_text="Write true/false; reads as {gid} (allocated automatically) or null.")
    permissions = serializers.PrimaryKeyRelatedField(queryset=Permission.objects.all(), many=True, required=False)
    object_permissions = ObjectPermissionSerializer(many=True, required=False)
    users = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.all(), many=True,
                                         required=False, source="user_set")

    class Meta:
        model = Group
        fields = ["id", "name", "description", "nas_group", "permissions", "object_permissions", "users"]

    def to_representation(self, group: Group) -> dict[str, Any]:
        data = super().to_representation(group)
        data["users"] = GroupMemberSerializer(group.user_set.all(), many=True).data
        by_group = self.context.get("object_permissions_by_group")
        data["object_permissions"] = (
            by_group.get(group.pk, []) if by_group is not None else permissions.group_object_permissions(group)
        )
        try:
            data["description"] = group.detail.description
        except ObjectDoesNotExist:
            data["description"] = ""
        return data


class PermissionSerializer(serializers.ModelSerializer):
    app_label = serializers.CharField(source="content_type.app_label", read_only=True)
    model = serializers.CharField(source="content_type.model", read_only=True)

    class Meta:
        model = Permission
        fields = ["id", "name", "codename", "app_label", "model"]


class PermissionEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    codename = serializers.CharField()
    app_label = serializers.CharField()
    model = serializers.CharField()


class ObjectPermissionEntrySerializer(PermissionEntrySerializer):
    object_pk = serializers.CharField()


class MyPermissionsSerializer(serializers.Serializer):
    """The four sections of ``/api/my-permissions/`` (documentation of the response shape)."""

    user_permissions = PermissionEntrySerializer(many=True)
    group_permissions = PermissionEntrySerializer(many=True)
    user_object_permissions = ObjectPermissionEntrySerializer(many=True)
    group_object_permissions = ObjectPermissionEntrySerializer(many=True)
