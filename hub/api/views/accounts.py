"""Users, groups, permissions and the caller's own permissions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Q
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from hub import permissions
from hub.api.serializers.accounts import (
    ChangePasswordSerializer,
    GroupSerializer,
    MyPermissionsSerializer,
    PermissionSerializer,
    UserSerializer,
)
from hub.api.viewsets import HubModelViewSet, HubReadOnlyViewSet, accepted
from hub.features import feature_enabled
from hub.filtersets import GroupFilterSet, PermissionFilterSet, UserFilterSet
from hub.services import accounts

User = get_user_model()

SyncAccepted = inline_serializer(
    "SyncAccepted",
    {"id": serializers.IntegerField(), "kind": serializers.CharField(), "state": serializers.CharField(),
     "tasks": serializers.ListField(child=serializers.DictField())},
)
Detail = inline_serializer("Detail", {"detail": serializers.CharField()})

# Fields of a user that only someone with the change permission may set, not the user itself:
# group membership would be self-promotion, and a password change must prove the old password
# (change_password), so a stolen token cannot lock the owner out.
ADMIN_ONLY_USER_FIELDS = ("groups", "nas_user", "username", "password")


def _sync_response(sync_request) -> Response:
    # Per-site task ids appear here once sites have agents to push to.
    return accepted({"id": sync_request.pk, "kind": sync_request.kind, "state": sync_request.state, "tasks": []})


class UserViewSet(HubModelViewSet):
    """API endpoint for managing users. Users are looked up by ``username``."""

    queryset = (
        User.objects.select_related("nas_user__primary_group", "profile").prefetch_related("groups").order_by("id")
    )
    serializer_class = UserSerializer
    filterset_class = UserFilterSet
    lookup_field = "username"
    lookup_value_regex = r"[^/]+"
    action_permissions = {"activate": "change", "deactivate": "change", "sync": "admin",
                          "change_password": "authenticated"}

    def owned_filter(self, user) -> Q:
        return Q(pk=user.pk)

    def is_owner(self, user, obj) -> bool:
        return obj.pk == user.pk

    @property
    def owner_actions(self) -> tuple[str, ...]:
        return ("view", "change") if feature_enabled("self_service_profile") else ("view",)

    def create_instance(self, serializer):
        return accounts.create_user(self.request.user, **serializer.validated_data)

    def update_instance(self, serializer):
        user = serializer.instance
        data = dict(serializer.validated_data)
        if not permissions.has_object_perm(self.request.user, user, "change"):
            forbidden = [name for name in ADMIN_ONLY_USER_FIELDS if name in data]
            if forbidden:
                raise PermissionDenied(f"Only an administrator may change: {', '.join(forbidden)}.")
        return accounts.update_user(self.request.user, user, **data)

    def destroy_instance(self, instance) -> None:
        accounts.delete_user(self.request.user, instance)

    @extend_schema(request=None, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def activate(self, request, username=None):
        """Activates user account with given username."""
        user = self.get_object()
        accounts.set_active(request.user, user, active=True)
        return Response(self.representation(user))

    @extend_schema(request=None, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def deactivate(self, request, username=None):
        """Deactivates user account with given username."""
        user = self.get_object()
        accounts.set_active(request.user, user, active=False)
        return Response(self.representation(user))

    @extend_schema(request=ChangePasswordSerializer, responses={200: Detail})
    @action(detail=False, methods=["post"], serializer_class=ChangePasswordSerializer)
    def change_password(self, request):
        """Change the caller's own password (the old one must be given)."""
        serializer = ChangePasswordSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        accounts.change_password(request.user, **serializer.validated_data)
        return Response({"detail": "Password changed."})

    @extend_schema(request=None, responses={202: SyncAccepted})
    @action(detail=False, methods=["post"])
    def sync(self, request):
        """API to sync NAS users on each site."""
        return _sync_response(accounts.request_sync(request.user, "users"))


class GroupViewSet(HubModelViewSet):
    """API endpoint for managing groups."""

    queryset = Group.objects.select_related("detail", "nas_group").prefetch_related("permissions", "user_set")
    serializer_class = GroupSerializer
    filterset_class = GroupFilterSet
    action_permissions = {"sync": "admin"}

    def get_queryset(self):
        return super().get_queryset().order_by("name")

    def owned_filter(self, user) -> Q:
        # Members may see the groups they belong to.
        return Q(pk__in=user.groups.values("pk"))

    def is_owner(self, user, obj) -> bool:
        return obj.user_set.filter(pk=user.pk).exists()

    def get_serializer(self, *args, **kwargs):
        if kwargs.get("many") and args:
            instances = list(args[0])
            context = self.get_serializer_context()
            context["object_permissions_by_group"] = permissions.groups_object_permissions(instances)
            kwargs["context"] = context
            return self.get_serializer_class()(instances, *args[1:], **kwargs)
        return super().get_serializer(*args, **kwargs)

    @staticmethod
    def _service_arguments(data: dict[str, Any]) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for source, target in (("name", "name"), ("user_set", "users"), ("permissions", "permissions_"),
                               ("nas_group", "nas_group")):
            if source in data:
                arguments[target] = data[source]
        if "detail" in data:
            arguments["description"] = data["detail"].get("description", "")
        if "object_permissions" in data:
            arguments["object_permissions"] = [item["resolved"] for item in data["object_permissions"]]
        return arguments

    def create_instance(self, serializer):
        return accounts.create_group(self.request.user, **self._service_arguments(dict(serializer.validated_data)))

    def update_instance(self, serializer):
        arguments = self._service_arguments(dict(serializer.validated_data))
        return accounts.update_group(self.request.user, serializer.instance, **arguments)

    def destroy_instance(self, instance) -> None:
        accounts.delete_group(self.request.user, instance)

    @extend_schema(request=None, responses={202: SyncAccepted})
    @action(detail=False, methods=["post"])
    def sync(self, request):
        """API to sync NAS groups on each site."""
        return _sync_response(accounts.request_sync(request.user, "groups"))


class PermissionViewSet(HubReadOnlyViewSet):
    """API endpoint for viewing permissions (the catalogue of what can be granted)."""

    queryset = Permission.objects.select_related("content_type").order_by("id")
    serializer_class = PermissionSerializer
    filterset_class = PermissionFilterSet
    # The catalogue is not secret: every signed-in user may read it.
    action_permissions = {"list": "authenticated", "retrieve": "authenticated"}

    def get_queryset(self):
        return self.queryset.all()


class MyPermissionsView(APIView):
    """API endpoint for viewing the requesting user's permissions.

    Answers a one-element list, as the product's reference shapes it.
    """

    @extend_schema(responses={200: MyPermissionsSerializer(many=True)})
    def get(self, request):
        return Response([permissions.permissions_of(request.user)])


__all__ = ["GroupViewSet", "MyPermissionsView", "PermissionViewSet", "UserViewSet"]
