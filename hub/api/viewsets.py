"""The base classes every hub API view inherits.

``HubModelViewSet`` gives each resource, declaratively:

* permission filtering and checks from ``hub.permissions`` (lists show only what the caller may
  view; hidden objects are 404; visible but not changeable is 403);
* the reference's pagination, including streamed ``page_size=0``;
* an audit event for every create, update, delete and action call;
* ``transaction.on_commit`` hooks via services (never publish work before the commit).

A subclass sets ``queryset``, ``serializer_class``, ``filterset_class`` and, where ownership
applies, ``owned_filter`` / ``is_owner``. Verbs (POST actions) call service functions.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.http import Http404
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from hub import audit, permissions
from hub.api.pagination import HubPagination
from hub.api.streaming import stream_json_list
from hub.permissions import CHANGE, VIEW, HubObjectPermissions, restrict

_CRUD_ACTIONS = {"list", "retrieve", "create", "update", "partial_update", "destroy", "metadata"}


class HubViewSetMixin:
    """Permission filtering, streaming and auditing shared by every hub viewset."""

    permission_classes = [HubObjectPermissions]
    pagination_class = HubPagination
    # Permission needed per action when not implied by the HTTP method (see HubObjectPermissions).
    action_permissions: dict[str, str] = {}
    # Actions that an owner may perform on what it owns without any granted permission.
    owner_actions: tuple[str, ...] = (VIEW,)
    # Whether any signed-in user may create (the new object then belongs to them).
    owners_may_create = False

    def owned_filter(self, user) -> Q | None:
        """The objects ``user`` owns, as a Q on this viewset's model (None: no owner rule)."""
        return None

    def is_owner(self, user, obj) -> bool:
        return False

    def get_queryset(self):
        queryset = super().get_queryset()
        # drf-spectacular builds the schema without a real user.
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        return restrict(queryset, self.request.user, VIEW, owned=self.owned_filter(self.request.user))

    def get_object(self):
        lookup = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field, "")
        if "\x00" in str(lookup):
            # No object is named with a NUL byte, and PostgreSQL cannot even search for one.
            raise Http404
        return super().get_object()

    # --- page_size=0: every row, streamed ------------------------------------------------------
    def list(self, request, *args, **kwargs):
        paginator = self.paginator
        if (
            isinstance(paginator, HubPagination)
            and paginator.wants_everything(request)
            and isinstance(request.accepted_renderer, JSONRenderer)
        ):
            queryset = self.filter_queryset(self.get_queryset())
            return stream_json_list(queryset, self.serialize_many)
        return super().list(request, *args, **kwargs)

    def serialize_many(self, objects: list[Any]) -> list[dict[str, Any]]:
        """Serialise one chunk of a streamed listing (subclasses may batch extra lookups)."""
        return self.get_serializer(objects, many=True).data

    # --- audit -----------------------------------------------------------------------------------
    def representation(self, instance) -> dict[str, Any]:
        return dict(self.get_serializer(instance).data)

    def create_instance(self, serializer):
        """Create the object from validated input (override to call a service)."""
        return serializer.save()

    def update_instance(self, serializer):
        """Apply validated input to ``serializer.instance`` (override to call a service)."""
        return serializer.save()

    def destroy_instance(self, instance) -> None:
        instance.delete()

    def check_parent_permission(self, serializer) -> None:
        """Without the model-level ``add`` permission, a caller may only add an object under a
        parent it administers (a share under a space it may change)."""
        user = self.request.user
        model = self.get_queryset().model
        if self.owners_may_create or permissions.has_model_perm(user, model, "add"):
            return
        parents = [serializer.validated_data.get(lookup) for lookup in permissions.creatable_under(model)]
        if not parents or not all(p is not None and permissions.has_object_perm(user, p, CHANGE) for p in parents):
            raise PermissionDenied("You do not have permission to add this here.")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["editable"] = self.editable
        return context

    def editable(self, obj) -> bool:
        """Whether the caller may change ``obj``; one query per request, whatever the page size."""
        user = self.request.user
        model = type(obj)
        if permissions.may_change_all(user, model):
            return True
        cache = self.__dict__.setdefault("_editable_ids", {})
        if model not in cache:
            cache[model] = set(restrict(model.objects.all(), user, CHANGE).values_list("pk", flat=True))
        return obj.pk in cache[model]

    def perform_create(self, serializer):
        self.check_parent_permission(serializer)
        instance = self.create_instance(serializer)
        serializer.instance = instance
        audit.record(self.request, "create", instance=instance, changes=audit.diff({}, self.representation(instance)))

    def perform_update(self, serializer):
        before = self.representation(serializer.instance)
        instance = self.update_instance(serializer)
        # Re-read through the viewset's queryset so relations changed by a service are fresh.
        instance = self.get_queryset().get(pk=instance.pk)
        serializer.instance = instance
        audit.record(self.request, "update", instance=instance,
                     changes=audit.diff(before, self.representation(instance)))

    def perform_destroy(self, instance):
        before = self.representation(instance)
        pk, label = instance.pk, str(instance)
        self.destroy_instance(instance)
        audit.record(self.request, "delete", model=type(instance), object_pk=pk, object_repr=label,
                     changes=audit.diff(before, {}))

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        action = getattr(self, "action", None)
        if (
            action
            and action not in _CRUD_ACTIONS
            and request.method not in ("GET", "HEAD", "OPTIONS")
            and 200 <= response.status_code < 300
        ):
            lookup = self.lookup_url_kwarg or self.lookup_field
            audit.record(
                request,
                "action",
                model=self.get_queryset().model,
                object_pk=kwargs.get(lookup),
                verb=action,
                status_code=response.status_code,
                changes=getattr(self, "audit_changes", None),
            )
        return response


class HubModelViewSet(HubViewSetMixin, viewsets.ModelViewSet):
    """Create, list, retrieve, patch and delete; PUT is not offered (the reference uses PATCH)."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]


class HubReadOnlyViewSet(HubViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """List and retrieve only."""


class HubListRetrieveUpdateViewSet(
    HubViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """List, retrieve and patch (for resources that are created by the system, e.g. features)."""

    http_method_names = ["get", "patch", "head", "options"]


def accepted(data: dict[str, Any]) -> Response:
    """202 Accepted for work that continues after the response (tasks on sites, syncs)."""
    return Response(data, status=status.HTTP_202_ACCEPTED)
