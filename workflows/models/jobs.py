"""Jobs, their tasks and their paths: the hub's record of every workflow run.

The database is the source of truth; Celery only carries messages. A ``Job`` is created with its
first tasks in one transaction, the messages are published after the commit, and the agents'
reports move rows forward with conditional updates (``transition``). States and their legal
transitions live in ``workflows.states``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from sites.models import Site
from workflows.states import (
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    JobState,
    LaunchedVia,
    PathState,
    TaskState,
)


def _transition(model: type[models.Model], row: models.Model, transitions: dict[str, tuple[str, ...]],
                new_state: str, fields: dict[str, Any]) -> bool:
    allowed = transitions.get(new_state, ())
    updated = model._default_manager.filter(pk=row.pk, state__in=allowed).update(state=new_state, **fields)
    if updated:
        row.state = new_state  # type: ignore[attr-defined]
        for name, value in fields.items():
            setattr(row, name, value)
    return bool(updated)


class Job(models.Model):
    """One run of a workflow on one site's paths (a DAG of ``Task`` rows).

    Counters (``paths_*``, ``bytes_*``, ``tasks_*``) are kept by the engine with ``F()`` updates
    as results arrive, so progress and list pages never count rows. A path is *done* when its
    chain ended: it was processed by the last step, or any step did not process it.
    """

    # Whoever may view the site sees its jobs; the owner always sees their own (see the viewset).
    permission_parents = ("site",)

    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="jobs")
    workflow_name = models.CharField(max_length=100, db_index=True)
    definition = models.JSONField(default=dict)
    site = models.ForeignKey(Site, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs")
    site_name = models.CharField(max_length=100, db_index=True)
    queue = models.CharField(max_length=100, db_index=True)
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.PENDING, db_index=True)
    state_reason = models.TextField(blank=True, default="")
    discovery = models.CharField(max_length=20, null=True, blank=True)
    paths = models.JSONField(default=list)
    # "\n"-joined input paths with a leading "\n", so input_paths_prefix is one indexed LIKE.
    paths_text = models.TextField(blank=True, default="")
    fields = models.JSONField(default=dict, blank=True)
    include = models.JSONField(default=list, blank=True)
    exclude = models.JSONField(default=list, blank=True)
    ignore_site_includes = models.BooleanField(default=False)
    ignore_site_excludes = models.BooleanField(default=False)

    launched_via = models.CharField(max_length=20, choices=LaunchedVia.choices, default=LaunchedVia.API,
                                    db_index=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="jobs")
    clientkey = models.ForeignKey("hub.ClientKey", on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="jobs")
    schedule_id = models.IntegerField(null=True, blank=True, db_index=True)
    resubmitted_from = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                         related_name="resubmissions")
    paused_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+")
    cancelled_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                     blank=True, related_name="+")

    created = models.DateTimeField(default=timezone.now, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    completed = models.DateTimeField(null=True, blank=True, db_index=True)

    paths_total = models.BigIntegerField(default=0)
    paths_done = models.BigIntegerField(default=0)
    paths_processed = models.BigIntegerField(default=0)
    paths_failed = models.BigIntegerField(default=0)
    paths_aborted = models.BigIntegerField(default=0)
    paths_skipped = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    bytes_processed = models.BigIntegerField(default=0)
    tasks_total = models.IntegerField(default=0)
    tasks_done = models.IntegerField(default=0)
    tasks_failed = models.IntegerField(default=0)
    # Discovery tasks not finished yet: while > 0 the job may still grow.
    discovery_pending = models.IntegerField(default=0)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["state", "completed"])]

    def __str__(self) -> str:
        return f"job {self.pk} {self.workflow_name}@{self.site_name} {self.state}"

    def transition(self, new_state: str, **fields: Any) -> bool:
        """Move to ``new_state`` if the row is in a state that may lead there; False otherwise."""
        return _transition(Job, self, JOB_TRANSITIONS, new_state, fields)

    @property
    def runtime(self) -> timedelta | None:
        if self.started is None:
            return None
        return (self.completed or timezone.now()) - self.started

    @property
    def progress(self) -> float:
        """Percentage of paths whose chain ended (0 while discovery has found nothing)."""
        if self.paths_total <= 0:
            return 100.0 if self.state in (JobState.SUCCESS, JobState.SKIPPED) else 0.0
        return round(100.0 * min(self.paths_done, self.paths_total) / self.paths_total, 2)


class Task(models.Model):
    """One agent task of a job: a discovery step or one step of a rule's chain over a batch.

    ``paths`` is the batch it was (or will be) sent: for a step after the first, the paths its
    parents processed, filled in when they finish. ``parents`` are the static DAG edges (the
    previous step of the chain); ``dynamic_parents`` the discovery task whose result created it.
    ``dispatched`` is set when the message is published (a PENDING task with it set is queued).
    """

    permission_parents = ("job",)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="tasks")
    task_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tasktype = models.CharField(max_length=60, db_index=True)
    friendly_name = models.CharField(max_length=255, blank=True, default="")
    site = models.ForeignKey(Site, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    site_name = models.CharField(max_length=100)
    queue = models.CharField(max_length=100)
    state = models.CharField(max_length=20, choices=TaskState.choices, default=TaskState.PENDING, db_index=True)
    parents = models.ManyToManyField("self", symmetrical=False, through="TaskDependency",
                                     through_fields=("child", "parent"), related_name="children", blank=True)
    dynamic_parents = models.JSONField(default=list, blank=True)
    rule = models.IntegerField(null=True, blank=True)
    step = models.IntegerField(default=0)
    is_last_step = models.BooleanField(default=True)
    internal = models.BooleanField(default=False, db_index=True)  # discovery and other bookkeeping tasks
    kwargs = models.JSONField(default=dict, blank=True)
    paths = models.JSONField(default=list, blank=True)
    path_count = models.IntegerField(default=0)
    byte_count = models.BigIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    node = models.CharField(max_length=255, blank=True, default="")
    attempts = models.IntegerField(default=0)
    retry_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries")
    created = models.DateTimeField(default=timezone.now)
    dispatched = models.DateTimeField(null=True, blank=True)
    started = models.DateTimeField(null=True, blank=True, db_index=True)
    completed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "state"])]

    def __str__(self) -> str:
        return f"task {self.pk} {self.tasktype} of job {self.job_id} {self.state}"

    def transition(self, new_state: str, **fields: Any) -> bool:
        """Move to ``new_state`` if the row is in a state that may lead there; False otherwise."""
        return _transition(Task, self, TASK_TRANSITIONS, new_state, fields)

    @property
    def runtime(self) -> timedelta | None:
        if self.started is None:
            return None
        return (self.completed or timezone.now()) - self.started


class TaskDependency(models.Model):
    """``child`` runs only after ``parent`` finished (a static DAG edge)."""

    parent = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="child_links")
    child = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="parent_links")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["parent", "child"], name="unique_task_dependency")]

    def __str__(self) -> str:
        return f"{self.parent_id} -> {self.child_id}"


def path_digest(path: str) -> str:
    """The key of a path within a job (paths can be longer than a database index allows)."""
    return hashlib.sha1(path.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()


class JobStat(models.Model):
    """One path of a job and its latest outcome (``task`` is the latest task that had it)."""

    permission_parents = ("job",)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="jobstats")
    path = models.TextField()
    path_key = models.CharField(max_length=40)
    task = models.ForeignKey(Task, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobstats")
    state = models.CharField(max_length=20, choices=PathState.choices, default=PathState.PENDING, db_index=True)
    code = models.CharField(max_length=60, blank=True, default="")
    message = models.TextField(blank=True, default="")
    size = models.BigIntegerField(null=True, blank=True)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "path_key"], name="unique_path_per_job")]

    def __str__(self) -> str:
        return f"{self.path} {self.state}"


class JobStatHistory(models.Model):
    """Every outcome a path had in a job, one row per task that reported it."""

    permission_parents = ("jobstat",)

    jobstat = models.ForeignKey(JobStat, on_delete=models.CASCADE, related_name="history")
    task = models.ForeignKey(Task, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    tasktype = models.CharField(max_length=60, blank=True, default="")
    state = models.CharField(max_length=20, choices=PathState.choices)
    message = models.TextField(blank=True, default="")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.tasktype} {self.state}"
