"""Job tracking and control: ``/jobs/``, ``/tasks/`` and ``/jobstats/``.

* ``/jobs/``: list (every filter of the reference), ``stats``, ``recent``, ``jobtype_choices``,
  detail with ``progress``, ``statistics`` and ``files``; ``POST`` launches (the launch view
  module), and the verbs ``pause``, ``resume``, ``cancel`` and ``resubmit`` and ``DELETE`` call
  ``workflows.services``.
* ``/tasks/``: the DAG's tasks, and the paths each one reported (``files``).
* ``/jobstats/``: each path of a job with its latest outcome and its ``history``.

Visibility (``hub.permissions``): whoever may view a job's site sees its jobs, their tasks and
their paths, and a user always sees the jobs they launched. Control (the verbs, ``DELETE``)
needs the job's ownership or the right to change its site: viewers get 403, others 404.

Every listing costs a fixed number of queries: owners are selected with the jobs, the frozen
workflow label is read from the definition by the database, task parents and path histories
are prefetched, and numbers come from the jobs' counters or one ``GROUP BY``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from hub.api.pagination import HubPagination
from hub.api.streaming import stream_json_list
from hub.api.viewsets import HubReadOnlyViewSet, HubViewSetMixin, accepted
from hub.models import ClientKey
from hub.permissions import CHANGE, VIEW
from workflows.api.serializers.jobs import (
    JobDetailSerializer,
    JobProgressSerializer,
    JobSerializer,
    JobStatHistorySerializer,
    JobStatisticsSerializer,
    JobStatSerializer,
    JobStatsSerializer,
    JobStatWithHistorySerializer,
    JobTypeChoiceSerializer,
    ResubmitNotFinishedSerializer,
    TaskDetailSerializer,
    TaskFileSerializer,
    TaskSerializer,
)
from workflows.api.serializers.launch import LaunchSerializer
from workflows.filtersets import (
    JobFilesFilterSet,
    JobFilterSet,
    JobStatFilterSet,
    StrictBooleanFilter,
    TaskFilesFilterSet,
    TaskFilterSet,
)
from workflows.models import Job, JobStat, JobStatHistory, Task, TaskDependency, Workflow
from workflows.states import JobState, LaunchedVia, PathState

# How many jobs ``/jobs/recent/`` answers (the reference's default).
RECENT_JOBS = 5


class FilteredListMixin:
    """Apply the viewset's filter set to its listings only.

    DRF filters the queryset of every action, detail lookups included; a listing's filters then
    turn ``/tasks/{id}/files/?state=processed`` (a path state) into a 400 from the tasks' own
    ``state`` filter, or a detail into a 404. Lookups by id ignore the listing's filters.
    """

    filtered_actions: frozenset[str] = frozenset({"list"})

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        if getattr(self, "action", None) not in self.filtered_actions:
            return queryset
        return super().filter_queryset(queryset)

    def sub_listing(self, request, queryset: QuerySet, filterset_class, serialize: Callable[[list[Any]], Any]):
        """A paginated (or, with ``page_size=0``, streamed) listing under one object."""
        filterset = filterset_class(request.query_params, queryset=queryset, request=request)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        queryset = filterset.qs
        paginator = self.paginator
        if (
            isinstance(paginator, HubPagination)
            and paginator.wants_everything(request)
            and isinstance(request.accepted_renderer, JSONRenderer)
        ):
            return stream_json_list(queryset, serialize)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serialize(page))


# --- /jobs/ ----------------------------------------------------------------------------------------

_JOB_VERB = extend_schema(request=None, responses={202: JobDetailSerializer})


class JobViewSet(
    FilteredListMixin, HubViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """API endpoint for managing jobs."""

    http_method_names = ["get", "post", "delete", "head", "options"]
    queryset = Job.objects.all()
    serializer_class = JobSerializer
    filterset_class = JobFilterSet
    filtered_actions = frozenset({"list", "stats", "recent"})
    # Control is administering the job's site, or owning the job; the launch checks its own rights.
    action_permissions = {"pause": CHANGE, "resume": CHANGE, "cancel": CHANGE, "resubmit": CHANGE,
                          "destroy": CHANGE, "create": "authenticated"}
    owner_actions = (VIEW, CHANGE)

    def owned_filter(self, user) -> Q:
        return Q(owner=user)

    def is_owner(self, user, obj) -> bool:
        return obj.owner_id is not None and obj.owner_id == user.pk

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if self.action in ("stats", "jobtype_choices"):
            return queryset
        queryset = queryset.select_related("owner").annotate(frozen_label=KT("definition__label"))
        if self.action in ("list", "recent"):
            # The frozen definition is for the detail; a page of jobs does not need to read it.
            queryset = queryset.defer("definition")
        return queryset

    def get_serializer_class(self):
        if self.action in ("list", "recent"):
            return JobSerializer
        return JobDetailSerializer

    @extend_schema(request=LaunchSerializer, responses={202: JobSerializer})
    def create(self, request, *args, **kwargs):
        """Launch a workflow (the same request as ``POST /file/workflow/``); 202 with the job."""
        from workflows.api.views import launch as launch_views

        return launch_views.launch(request, via=LaunchedVia.API)

    def destroy_instance(self, instance: Job) -> None:
        from workflows import services

        services.delete_job(instance, actor=self.request.user)

    # --- collections ---------------------------------------------------------------------------
    @extend_schema(filters=True, responses={200: JobStatsSerializer})
    @action(detail=False, methods=["get"])
    def stats(self, request):
        """How many of the (filtered) jobs are in each state, and their paths' outcomes summed."""
        queryset = self.filter_queryset(self.get_queryset()).order_by()
        aggregates: dict[str, Any] = {f"state_{state}": Count("pk", filter=Q(state=state)) for state in JobState.values}
        aggregates.update(total=Count("pk"), processed=Sum("paths_processed"), failed=Sum("paths_failed"),
                          aborted=Sum("paths_aborted"), skipped=Sum("paths_skipped"))
        row = queryset.aggregate(**aggregates)
        return Response({
            "total": row["total"],
            "states": {state: row[f"state_{state}"] for state in JobState.values},
            "paths": {key: row[key] or 0 for key in ("processed", "failed", "aborted", "skipped")},
        })

    @extend_schema(responses={200: JobSerializer(many=True)})
    @action(detail=False, methods=["get"])
    def recent(self, request):
        """The last few jobs the caller may see (newest first)."""
        queryset = self.filter_queryset(self.get_queryset())[:RECENT_JOBS]
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(filters=False, responses={200: JobTypeChoiceSerializer(many=True)})
    @action(detail=False, methods=["get"], pagination_class=None)
    def jobtype_choices(self, request):
        """Every workflow, and the workflow names that visible jobs still carry (deleted workflows)."""
        choices = [{"value": name, "label": label or name}
                   for name, label in Workflow.objects.order_by("name").values_list("name", "label")]
        known = {choice["value"] for choice in choices}
        carried = self.get_queryset().order_by("workflow_name").values_list("workflow_name", flat=True).distinct()
        choices.extend({"value": name, "label": name} for name in carried if name not in known)
        return Response(choices)

    # --- one job -------------------------------------------------------------------------------
    @extend_schema(responses={200: JobProgressSerializer})
    @action(detail=True, methods=["get"])
    def progress(self, request, pk=None):
        """The job's completion percentage, from its counters."""
        job = self.get_object()
        return Response({"id": job.pk, "state": job.state, "progress": job.progress, "paths_total": job.paths_total,
                         "paths_done": job.paths_done, "discovery_complete": job.discovery_pending == 0})

    @extend_schema(responses={200: JobStatisticsSerializer})
    @action(detail=True, methods=["get"])
    def statistics(self, request, pk=None):
        """Files and bytes of the job in each path state (one ``GROUP BY``)."""
        job = self.get_object()
        totals = {state: {"files": 0, "bytes": 0} for state in PathState.values}
        rows = (JobStat.objects.filter(job=job).order_by().values("state")
                .annotate(files=Count("pk"), bytes=Sum("size")))
        for row in rows:
            totals[row["state"]] = {"files": row["files"], "bytes": row["bytes"] or 0}
        return Response(totals)

    @extend_schema(
        filters=False,
        parameters=[OpenApiParameter("category", str, enum=PathState.values, description="Path state")],
        responses={200: JobStatSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def files(self, request, pk=None):
        """The job's paths with their outcome (``category``: one path state)."""
        job = self.get_object()
        context = self.get_serializer_context()
        return self.sub_listing(
            request, JobStat.objects.filter(job=job).order_by("id"), JobFilesFilterSet,
            lambda rows: JobStatSerializer(rows, many=True, context=context).data,
        )

    # --- verbs ---------------------------------------------------------------------------------
    def _control(self, verb: Callable[..., Job]) -> Response:
        job = verb(self.get_object(), actor=self.request.user)
        self.audit_changes = {"state": job.state}
        return accepted(self.get_serializer(self.get_queryset().get(pk=job.pk)).data)

    @_JOB_VERB
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Stop dispatching the job's tasks; running ones finish, then the job is Paused."""
        from workflows import services

        return self._control(services.pause_job)

    @_JOB_VERB
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Dispatch the paused job's tasks again."""
        from workflows import services

        return self._control(services.resume_job)

    @_JOB_VERB
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Revoke the job's queued tasks and tell running ones to stop at the next file."""
        from workflows import services

        return self._control(services.cancel_job)

    @extend_schema(request=None, responses={202: JobDetailSerializer, 200: ResubmitNotFinishedSerializer})
    @action(detail=True, methods=["post"])
    def resubmit(self, request, pk=None):
        """A new job over the paths that failed or never ran; no effect while the job is unfinished."""
        from workflows import services

        job = self.get_object()
        clientkey = request.auth if isinstance(request.auth, ClientKey) else None
        new_job = services.resubmit_job(job, actor=request.user, clientkey=clientkey)
        if new_job is None:
            self.audit_changes = {"resubmitted": False}
            return Response({"detail": f"Job {job.pk} is not finished ({job.state}): resubmitting it has no effect."},
                            status=status.HTTP_200_OK)
        self.audit_changes = {"resubmitted": True, "new_job": new_job.pk}
        return accepted(self.get_serializer(self.get_queryset().get(pk=new_job.pk)).data)


# --- /tasks/ ---------------------------------------------------------------------------------------

class TaskViewSet(FilteredListMixin, HubReadOnlyViewSet):
    """API endpoint for viewing tasks."""

    queryset = Task.objects.all()
    serializer_class = TaskSerializer
    filterset_class = TaskFilterSet

    def owned_filter(self, user) -> Q:
        return Q(job__owner=user)

    def is_owner(self, user, obj) -> bool:
        return obj.job.owner_id is not None and obj.job.owner_id == user.pk

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset().prefetch_related(
            Prefetch("parent_links", queryset=TaskDependency.objects.only("id", "parent_id", "child_id"))
        )
        if self.action == "list":
            # A page of tasks does not carry their batches and results.
            return queryset.defer("paths", "result", "kwargs")
        return queryset.select_related("job")

    def get_serializer_class(self):
        return TaskSerializer if self.action == "list" else TaskDetailSerializer

    @extend_schema(
        filters=False,
        parameters=[OpenApiParameter("state", str, enum=PathState.values, description="Path state")],
        responses={200: TaskFileSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def files(self, request, pk=None):
        """The paths this task reported, with their outcome and message."""
        task = self.get_object()
        context = self.get_serializer_context()
        rows = JobStatHistory.objects.filter(task=task).select_related("jobstat").order_by("id")
        return self.sub_listing(request, rows, TaskFilesFilterSet,
                                lambda page: TaskFileSerializer(page, many=True, context=context).data)


# --- /jobstats/ ------------------------------------------------------------------------------------

class JobStatViewSet(FilteredListMixin, HubReadOnlyViewSet):
    """API endpoint for the paths of jobs (job stats)."""

    queryset = JobStat.objects.all()
    serializer_class = JobStatSerializer
    filterset_class = JobStatFilterSet

    def owned_filter(self, user) -> Q:
        return Q(job__owner=user)

    def is_owner(self, user, obj) -> bool:
        return obj.job.owner_id is not None and obj.job.owner_id == user.pk

    def with_history(self) -> bool:
        return self.action == "list" and StrictBooleanFilter.truth(self.request.query_params.get("history", ""))

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset.select_related("job")
        if self.with_history():
            queryset = queryset.prefetch_related(Prefetch("history", queryset=JobStatHistory.objects.order_by("id")))
        return queryset

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        context["with_history"] = self.with_history()
        return context

    @extend_schema(responses={200: JobStatWithHistorySerializer})
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """The path and every outcome it had in the job, one per task that reported it, oldest first."""
        jobstat = self.get_object()
        data = JobStatSerializer(jobstat, context=self.get_serializer_context()).data
        rows = JobStatHistory.objects.filter(jobstat=jobstat).order_by("id")
        data["history"] = JobStatHistorySerializer(rows, many=True).data
        return Response(data)


# (prefix, viewset, basename) registered on the /api/ router by workflows.api.urls.
routes: list = [
    ("jobs", JobViewSet, "job"),
    ("tasks", TaskViewSet, "task"),
    ("jobstats", JobStatViewSet, "jobstat"),
]
urlpatterns: list = []
