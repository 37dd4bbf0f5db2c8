"""Buckets, external targets and the remote listing of a target.

* ``/buckets/``: administrators' resource (model permissions). Credentials are write-only and
  masked in every answer. DELETE of a bucket that targets use is a soft delete answered 202 with
  the removal tasks (``sites.services.targets``); a soft-deleting bucket refuses changes (409).
* ``/external_targets/``: covered by the permission on the target's space (viewers of the space
  see its targets, administrators of the space manage them). Each write sends the sites'
  agents their new configuration; DELETE removes the row at once and never deletes remote data.
* ``/external_targets/{id}/files/``: one page of the remote listing, answered by an agent of a
  site where the target is available, within ``stat_timeout`` seconds.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Prefetch
from django.urls import NoReverseMatch, path, reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from hub import audit
from hub.api.exceptions import Conflict
from hub.api.viewsets import HubModelViewSet, accepted
from hub.permissions import VIEW, restrict
from sites.api.serializers.targets import (
    BucketSerializer,
    ExternalTargetSerializer,
    RemoteListingSerializer,
    TargetFilesQuerySerializer,
)
from sites.filtersets.targets import BucketFilterSet, ExternalTargetFilterSet
from sites.models import Bucket, ExternalTarget, SettingsTask, Site, SpaceSite
from sites.services import targets as target_service

BucketDeletionAccepted = inline_serializer(
    "BucketDeletionAccepted",
    {
        "id": serializers.IntegerField(),
        "soft_deleting": serializers.BooleanField(),
        "detail": serializers.CharField(),
        "tasks": serializers.ListField(child=serializers.DictField()),
    },
)


def _target_ids_only():
    return ExternalTarget.objects.only("id", "bucket_id").order_by("id")


def _site_ids_only():
    return Site.objects.only("id").order_by("id")


class DeletionErrorsMixin:
    """Puts ``deletion_error`` of the buckets being serialised in the context: one query per
    page (none when no bucket on it is soft-deleting)."""

    @staticmethod
    def buckets_of(objects: list[Any]) -> list[Bucket]:
        return [obj if isinstance(obj, Bucket) else obj.bucket for obj in objects]

    def get_serializer(self, *args, **kwargs):
        if args and args[0] is not None:
            many = kwargs.get("many", False)
            objects = list(args[0]) if many else [args[0]]
            context = kwargs.pop("context", None) or self.get_serializer_context()
            context["deletion_errors"] = target_service.deletion_errors(self.buckets_of(objects))
            kwargs["context"] = context
            args = (objects if many else args[0], *args[1:])
        return super().get_serializer(*args, **kwargs)


def _task_summary(request, task: SettingsTask) -> dict[str, Any]:
    summary = {
        "id": task.pk,
        "task_id": str(task.task_id),
        "tasktype": task.tasktype,
        "state": task.state,
        "site": task.site_id,
        "site_name": task.site.name,
        "target": (task.request.get("target") or {}).get("id"),
    }
    try:
        summary["url"] = request.build_absolute_uri(reverse("settingstask-detail", args=[task.pk]))
    except NoReverseMatch:
        pass
    return summary


class BucketViewSet(DeletionErrorsMixin, HubModelViewSet):
    """Model View Set for the Bucket model (credentials write-only and masked)."""

    queryset = Bucket.objects.prefetch_related(Prefetch("external_targets", queryset=_target_ids_only()))
    serializer_class = BucketSerializer
    filterset_class = BucketFilterSet

    def create_instance(self, serializer):
        return target_service.create_bucket(self.request.user, serializer.validated_data)

    def update(self, request, *args, **kwargs):
        if self.get_object().soft_deleting:
            raise Conflict(target_service.BEING_DELETED)
        return super().update(request, *args, **kwargs)

    def update_instance(self, serializer):
        return target_service.update_bucket(self.request.user, serializer.instance, serializer.validated_data)

    @extend_schema(responses={204: None, 202: BucketDeletionAccepted})
    def destroy(self, request, *args, **kwargs):
        """Delete the bucket and apply the settings to delete them on external targets on all sites
        that they are available (202 with the removal tasks; the bucket goes when they succeed)."""
        bucket = self.get_object()
        pk, label = bucket.pk, str(bucket)
        before = self.representation(bucket)
        tasks = target_service.delete_bucket(request.user, bucket)
        if tasks is None:
            audit.record(request, "delete", model=Bucket, object_pk=pk, object_repr=label,
                         changes=audit.diff(before, {}))
            return Response(status=status.HTTP_204_NO_CONTENT)
        after = self.representation(self.get_queryset().get(pk=pk))
        audit.record(request, "delete", model=Bucket, object_pk=pk, object_repr=label,
                     changes=audit.diff(before, after), status_code=status.HTTP_202_ACCEPTED)
        return accepted({
            "id": pk,
            "soft_deleting": True,
            "detail": (
                f"Removing the bucket's targets from {len(tasks)} site(s); the bucket and its targets are "
                "deleted when every removal succeeds. Remote objects are not deleted."
            ),
            "tasks": [_task_summary(request, task) for task in tasks],
        })


class ExternalTargetViewSet(DeletionErrorsMixin, HubModelViewSet):
    """Model View Set for the ExternalTarget model (a space's files matching a regex go to a bucket)."""

    queryset = ExternalTarget.objects.select_related("bucket", "space", "backup_site").prefetch_related(
        Prefetch("available_on_sites", queryset=_site_ids_only()),
        Prefetch("configured_on_sites", queryset=_site_ids_only()),
        Prefetch("space__placements", queryset=SpaceSite.objects.only("id", "space_id", "site_id").order_by("site_id")),
        Prefetch("bucket__external_targets", queryset=_target_ids_only()),
    )
    serializer_class = ExternalTargetSerializer
    filterset_class = ExternalTargetFilterSet

    def create_instance(self, serializer):
        return target_service.create_target(self.request.user, serializer.validated_data)

    def update(self, request, *args, **kwargs):
        if self.get_object().bucket.soft_deleting:
            raise Conflict(target_service.TARGET_BUCKET_BEING_DELETED)
        return super().update(request, *args, **kwargs)

    def update_instance(self, serializer):
        return target_service.update_target(self.request.user, serializer.instance, serializer.validated_data)

    def destroy_instance(self, instance) -> None:
        """The row goes at once; the sites are told to forget the target. Remote objects stay."""
        target_service.delete_target(self.request.user, instance)


class ExternalTargetFilesView(APIView):
    """One page of an external target's remote listing, served by an agent of one of its sites.

    ``path`` is a prefix or a glob (globs are not recursive), ``max_items`` 1..1000 (default:
    configuration ``maximum_external_results``), ``marker`` the previous page's ``next_marker``.
    Answers 503 when no site of the target has an agent online, 504 (with the task id) when the
    agent does not answer within ``stat_timeout`` seconds, 502 when it reports an error.

    Routed non-atomic: the order must be committed (and published) before the wait, and the
    agent's answer read in fresh transactions.
    """

    permission_classes = [IsAuthenticated]

    def dispatch(self, request, *args, **kwargs):
        if transaction.get_connection().in_atomic_block:
            # Called inside a transaction someone else owns (a test, an embedding caller): an
            # error answer then rolls back this request's savepoint only, not their transaction.
            with transaction.atomic():
                return super().dispatch(request, *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(parameters=[TargetFilesQuerySerializer], responses={200: RemoteListingSerializer})
    def get(self, request, pk: int):
        query = TargetFilesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        visible = restrict(ExternalTarget.objects.all(), request.user, VIEW)
        target = (
            visible.select_related("bucket", "space")
            .prefetch_related("available_on_sites", "configured_on_sites")
            .filter(pk=pk)
            .first()
        )
        if target is None:
            raise NotFound
        listing = target_service.list_target_files(
            request.user, target,
            path=query.validated_data["path"],
            max_items=query.validated_data.get("max_items") or target_service.default_max_items(),
            marker=query.validated_data["marker"],
        )
        answer = RemoteListingSerializer(data=listing.results)
        if not answer.is_valid():
            raise target_service.AgentFailed({
                "detail": f"The agent of site '{listing.site.name}' answered with a malformed listing.",
                "error": str(answer.errors)[:2000],
                "task_id": str(listing.task.task_id),
                "site": listing.site.name,
            })
        return Response(answer.validated_data)


# (prefix, viewset, basename) registered on the /api/ router by sites.api.urls.
routes: list = [
    ("buckets", BucketViewSet, "bucket"),
    ("external_targets", ExternalTargetViewSet, "externaltarget"),
]
# Extra paths (plain APIViews) under /api/.
urlpatterns: list = [
    path(
        "external_targets/<int:pk>/files/",
        transaction.non_atomic_requests(ExternalTargetFilesView.as_view()),
        name="externaltarget-files",
    ),
]
