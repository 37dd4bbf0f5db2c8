"""Jobs, their tasks and their paths (job stats) as the API reference shapes them.

Nothing here queries the database while representing an object: the viewsets select the owner,
annotate the frozen workflow label, and prefetch task parents and path histories. A job's
numbers come from its counters (``Job.paths_*``, ``bytes_*``, ``tasks_*``), never from counting
rows, so a list page costs the same whatever the jobs' sizes.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from workflows.models import Job, JobStat, JobStatHistory, Task
from workflows.states import PathState


def _seconds(delta) -> float | None:
    return round(delta.total_seconds(), 3) if delta is not None else None


class JobCountsSerializer(serializers.Serializer):
    """The job's counters (schema only: ``JobSerializer.get_counts`` builds the object)."""

    paths_total = serializers.IntegerField(help_text="Paths found so far (grows while discovery runs)")
    paths_done = serializers.IntegerField(help_text="Paths whose chain ended (processed by its last step, "
                                                    "or not processed by some step)")
    processed = serializers.IntegerField()
    failed = serializers.IntegerField()
    aborted = serializers.IntegerField()
    skipped = serializers.IntegerField()
    bytes_total = serializers.IntegerField()
    bytes_processed = serializers.IntegerField()
    tasks_total = serializers.IntegerField()
    tasks_done = serializers.IntegerField()
    tasks_failed = serializers.IntegerField()


class JobSerializer(serializers.ModelSerializer):
    """A job as lists show it (read-only: jobs are made by a launch and moved by the engine)."""

    url = serializers.HyperlinkedIdentityField(view_name="job-detail")
    workflow = serializers.CharField(source="workflow_name", read_only=True, help_text="Job workflow type")
    workflow_label = serializers.SerializerMethodField(help_text="The workflow's label when the job was launched")
    site = serializers.CharField(source="site_name", read_only=True, help_text="Job site name")
    owner = serializers.SerializerMethodField(help_text="Username of who launched the job (null: unknown or system)")
    clientkey = serializers.IntegerField(source="clientkey_id", read_only=True, allow_null=True,
                                         help_text="The client key the job was launched with")
    schedule = serializers.IntegerField(source="schedule_id", read_only=True, allow_null=True,
                                        help_text="The schedule that launched the job")
    resubmitted_from = serializers.IntegerField(source="resubmitted_from_id", read_only=True, allow_null=True,
                                                help_text="The job this one resubmits")
    runtime = serializers.SerializerMethodField(help_text="Seconds between start and completion (or now, while "
                                                          "running); null before the job starts")
    progress = serializers.FloatField(read_only=True, help_text="Percentage of paths whose chain ended")
    counts = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = ["id", "url", "workflow", "workflow_label", "site", "site_id", "queue", "state", "state_reason",
                  "discovery", "paths", "fields", "include", "exclude", "ignore_site_includes",
                  "ignore_site_excludes", "launched_via", "owner", "owner_id", "clientkey", "schedule",
                  "resubmitted_from", "created", "started", "completed", "runtime", "progress", "counts"]
        read_only_fields = fields
        extra_kwargs = {"site_id": {"read_only": True}, "owner_id": {"read_only": True}}

    def get_workflow_label(self, job: Job) -> str:
        # The view annotates the frozen label so lists need not load each job's definition.
        label = getattr(job, "frozen_label", None)
        if label is None and "definition" in job.__dict__:
            label = (job.definition or {}).get("label")
        return label or job.workflow_name

    def get_owner(self, job: Job) -> str | None:
        # ``owner`` is selected with the job by the view.
        return job.owner.username if job.owner_id is not None else None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_runtime(self, job: Job) -> float | None:
        return _seconds(job.runtime)

    @extend_schema_field(JobCountsSerializer)
    def get_counts(self, job: Job) -> dict[str, int]:
        return {
            "paths_total": job.paths_total, "paths_done": job.paths_done, "processed": job.paths_processed,
            "failed": job.paths_failed, "aborted": job.paths_aborted, "skipped": job.paths_skipped,
            "bytes_total": job.bytes_total, "bytes_processed": job.bytes_processed,
            "tasks_total": job.tasks_total, "tasks_done": job.tasks_done, "tasks_failed": job.tasks_failed,
        }


class JobDetailSerializer(JobSerializer):
    """A job with the frozen copy of the workflow it runs (editing the workflow never changes it)."""

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "definition"]
        read_only_fields = fields


class JobStatsSerializer(serializers.Serializer):
    """Schema of ``/jobs/stats/``."""

    total = serializers.IntegerField()
    states = serializers.DictField(child=serializers.IntegerField(), help_text="Jobs per state (every state)")
    paths = serializers.DictField(child=serializers.IntegerField(),
                                  help_text="Paths processed, failed, aborted and skipped, summed over the jobs")


class JobTypeChoiceSerializer(serializers.Serializer):
    value = serializers.CharField(help_text="Workflow name (the jobs list's ``workflow`` filter)")
    label = serializers.CharField()


class JobProgressSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    progress = serializers.FloatField(help_text="Percentage of paths whose chain ended")
    paths_total = serializers.IntegerField()
    paths_done = serializers.IntegerField()
    discovery_complete = serializers.BooleanField(help_text="False while discovery may still find more paths")


class PathTotalsSerializer(serializers.Serializer):
    files = serializers.IntegerField()
    bytes = serializers.IntegerField()


# Schema of ``/jobs/{id}/statistics/``: one entry per path state (built from PathState, so a new
# state cannot be forgotten here).
JobStatisticsSerializer = type(
    "JobStatisticsSerializer", (serializers.Serializer,),
    {"__doc__": "Files and bytes per path state.", **{state: PathTotalsSerializer() for state in PathState.values}},
)


class ResubmitNotFinishedSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --- tasks -----------------------------------------------------------------------------------------

class TaskSerializer(serializers.ModelSerializer):
    """A task as lists show it. ``parents`` is the list of the tasks it waited for (the reference
    calls it a string; a list is what it holds)."""

    url = serializers.HyperlinkedIdentityField(view_name="task-detail")
    job = serializers.IntegerField(source="job_id", read_only=True)
    parents = serializers.SerializerMethodField(help_text="Ids of the tasks this one runs after")
    dynamic_parents = serializers.ListField(child=serializers.IntegerField(), read_only=True,
                                            help_text="Ids of the discovery tasks whose results created this one")
    site = serializers.CharField(source="site_name", read_only=True)
    task_id = serializers.CharField(read_only=True, help_text="The id the agent reports the task under")

    class Meta:
        model = Task
        fields = ["id", "url", "job", "parents", "dynamic_parents", "site", "started", "state", "task_id",
                  "tasktype"]
        read_only_fields = fields
        extra_kwargs = {"started": {"help_text": "Time that the task started running"}}

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_parents(self, task: Task) -> list[int]:
        # ``parent_links`` is prefetched by the view (one query per page, not per task).
        return sorted(link.parent_id for link in task.parent_links.all())


class TaskDetailSerializer(TaskSerializer):
    runtime = serializers.SerializerMethodField(help_text="Seconds between start and completion (or now, while "
                                                          "running); null before the task starts")

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "completed", "friendly_name", "paths", "result", "runtime", "queue",
                  "node", "attempts"]
        read_only_fields = fields
        extra_kwargs = {
            **TaskSerializer.Meta.extra_kwargs,
            "completed": {"help_text": "Time of the task completion"},
            "friendly_name": {"help_text": "Text to be used to describe what this task is doing."},
            "paths": {"help_text": "The batch of paths the task was sent"},
            "node": {"help_text": "The agent node that ran it"},
        }

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_runtime(self, task: Task) -> float | None:
        return _seconds(task.runtime)


# --- job stats (paths) -----------------------------------------------------------------------------

class JobStatHistorySerializer(serializers.ModelSerializer):
    """One outcome a path had: which task reported it, and what it said."""

    task = serializers.IntegerField(source="task_id", read_only=True, allow_null=True)

    class Meta:
        model = JobStatHistory
        fields = ["id", "task", "tasktype", "state", "message", "created"]
        read_only_fields = fields


class TaskFileSerializer(serializers.ModelSerializer):
    """A path as one task reported it (``/tasks/{id}/files/``)."""

    jobstat = serializers.IntegerField(source="jobstat_id", read_only=True)
    path = serializers.CharField(source="jobstat.path", read_only=True)

    class Meta:
        model = JobStatHistory
        fields = ["id", "jobstat", "path", "state", "message", "tasktype", "created"]
        read_only_fields = fields


class JobStatSerializer(serializers.ModelSerializer):
    """A path of a job and its latest outcome; ``history`` only when the caller asked for it."""

    url = serializers.HyperlinkedIdentityField(view_name="jobstat-detail")
    job = serializers.IntegerField(source="job_id", read_only=True, help_text="Related job id")
    task = serializers.IntegerField(source="task_id", read_only=True, allow_null=True,
                                    help_text="Latest related dag task")

    class Meta:
        model = JobStat
        fields = ["code", "id", "job", "message", "path", "state", "task", "url", "size"]
        read_only_fields = fields
        extra_kwargs = {"path": {"help_text": "Path to object on filesystem"}}

    def to_representation(self, instance: JobStat) -> dict[str, Any]:
        data = super().to_representation(instance)
        if self.context.get("with_history"):
            # Prefetched by the view; ``.all()`` reads the prefetch cache.
            data["history"] = JobStatHistorySerializer(instance.history.all(), many=True).data
        return data


class JobStatWithHistorySerializer(JobStatSerializer):
    """Schema of ``/jobstats/{id}/history/``: the path and every outcome it had, oldest first."""

    history = JobStatHistorySerializer(many=True, read_only=True)

    class Meta(JobStatSerializer.Meta):
        fields = [*JobStatSerializer.Meta.fields, "history"]
        read_only_fields = fields

    def to_representation(self, instance: JobStat) -> dict[str, Any]:
        return serializers.ModelSerializer.to_representation(self, instance)
