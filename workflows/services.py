"""Use cases of the workflow engine: launch a job, pause, resume, cancel, resubmit, delete.

Each takes the ``actor`` who asked and records it. Launch validates everything before writing
anything (a refused launch leaves no row behind); the job and its first tasks are created in one
transaction and the messages leave after the commit.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from hub import permissions
from hub.api.exceptions import Conflict
from sites.models import DEFAULT_QUEUE, Queue, Site, Space
from workflows import dag, definitions, dispatch, engine
from workflows.models import Job, JobStat, Task, Workflow
from workflows.states import (
    JOB_CANCELLING,
    JOB_DISPATCHING,
    JOB_TERMINAL,
    JobState,
    LaunchedVia,
    PathState,
    TaskState,
)

MAX_PATHS = 10_000


@dataclass
class LaunchRequest:
    """What a caller asks for (``POST /api/file/workflow/`` and ``POST /api/jobs/``)."""

    site: str
    workflow: str
    paths: list[Any] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    ignore_site_includes: bool = False
    ignore_site_excludes: bool = False
    discovery: str | None = None
    discovery_given: bool = False  # whether the request named a discovery (None included)
    queue: str | None = None
    job: int | None = None
    schedule_id: int | None = None


def _normalise_path(raw: Any) -> tuple[str, dict[str, Any]]:
    """A requested path item as ``(absolute normalised path, extra item fields)``."""
    item: dict[str, Any]
    if isinstance(raw, str):
        item = {"path": raw}
    elif isinstance(raw, dict) and isinstance(raw.get("path"), str):
        item = dict(raw)
    else:
        raise ValueError("each path must be a string or an object with a 'path' string")
    path = item.pop("path")
    if not path or "\x00" in path:
        raise ValueError("a path may not be empty or hold a NUL byte")
    if not path.startswith("/"):
        raise ValueError(f"'{path[:200]}' is not absolute")
    if ".." in path.split("/"):
        raise ValueError(f"'{path[:200]}' holds '..'")
    extra = {k: v for k, v in item.items() if k in ("size", "type", "state", "key")}
    return posixpath.normpath(path).replace("//", "/"), extra


def _space_of(path: str, spaces: list[Space]) -> Space | None:
    best = None
    for space in spaces:
        mountpoint = space.mountpoint.rstrip("/") or "/"
        if path == mountpoint or path.startswith(mountpoint + "/") or mountpoint == "/":
            if best is None or len(space.mountpoint) > len(best.mountpoint):
                best = space
    return best


def launch(request: LaunchRequest, *, actor: Any, clientkey: Any = None, via: str = LaunchedVia.API) -> Job:
    """Validate ``request`` and start its job (or add its paths to ``request.job``)."""
    errors: dict[str, Any] = {}
    workflow = Workflow.objects.filter(name=request.workflow).first()
    if workflow is None:
        errors["workflow"] = [f"Unknown workflow '{request.workflow}'."]
    elif not workflow.enabled:
        errors["workflow"] = [f"Workflow '{workflow.name}' is disabled."]
    elif workflow.schedule_only and via != LaunchedVia.SCHEDULE:
        errors["workflow"] = [f"Workflow '{workflow.name}' runs only from a schedule."]
    site = Site.objects.filter(name=request.site).first()
    if site is None or not permissions.has_object_perm(actor, site, permissions.VIEW):
        errors["site"] = [f"Unknown site '{request.site}'."]
    if errors:
        raise ValidationError(errors)
    assert workflow is not None and site is not None
    discovery = request.discovery if request.discovery_given else workflow.discovery
    if discovery not in (None, "recursive", "snapdiff"):
        errors["discovery"] = [f"Unknown discovery '{discovery}' (use 'recursive' or null)."]
    elif discovery == "snapdiff":
        errors["discovery"] = ["Snapshot-difference discovery is not available on this hub yet, so "
                               f"'{workflow.name}' cannot run; use a workflow with recursive discovery."]
    fields = {}
    try:
        fields = definitions.resolve_field_values(workflow.fields or [], request.fields or {})
    except ValidationError as exc:
        errors.update(exc.detail if isinstance(exc.detail, dict) else {"fields": exc.detail})
    if not errors:
        try:
            dag.compile_rules(workflow.filter_rules or [], fields)
        except (KeyError, ValueError) as exc:
            errors["fields"] = [f"The workflow's rules cannot use these fields: {exc}"]
    queue = request.queue or workflow.preferred_queue or DEFAULT_QUEUE
    if queue != DEFAULT_QUEUE and not Queue.objects.filter(site=site, name=queue).exists():
        known = sorted(Queue.objects.filter(site=site).values_list("name", flat=True))
        errors["queue"] = [f"Site '{site.name}' has no queue '{queue}'" + (f" (known: {', '.join(known)})."
                                                                          if known else ".")]
    items: list[tuple[str, dict[str, Any]]] = []
    path_errors: list[str] = []
    if not isinstance(request.paths, list) or not request.paths:
        errors["paths"] = ["Give at least one path."]
    elif len(request.paths) > MAX_PATHS:
        errors["paths"] = [f"At most {MAX_PATHS} paths per request; use a directory and recursive discovery."]
    else:
        spaces = list(Space.objects.filter(sites=site))
        for raw in request.paths:
            try:
                path, extra = _normalise_path(raw)
            except ValueError as exc:
                path_errors.append(str(exc))
                continue
            space = _space_of(path, spaces)
            if space is None:
                path_errors.append(f"'{path[:200]}' is not inside a space of site '{site.name}'.")
            elif not permissions.has_object_perm(actor, space, permissions.CHANGE):
                path_errors.append(f"'{path[:200]}': you may not run workflows in space '{space.name}'.")
            else:
                items.append((path, extra))
        if path_errors:
            errors["paths"] = path_errors[:20] + ([f"... and {len(path_errors) - 20} more."]
                                                 if len(path_errors) > 20 else [])
    for name in ("include", "exclude"):
        value = getattr(request, name)
        if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
            errors[name] = ["A list of non-empty glob strings."]
    existing = None
    if request.job is not None:
        existing = Job.objects.filter(pk=request.job).first()
        if existing is None or not (existing.owner_id == getattr(actor, "pk", None) or permissions.has_object_perm(
                actor, existing, permissions.CHANGE)):
            errors["job"] = [f"Unknown job {request.job}."]
        elif existing.state in JOB_TERMINAL or existing.state in JOB_CANCELLING:
            errors["job"] = [f"Job {existing.pk} is {existing.get_state_display().lower()}; paths can only be "
                             "added to a job that is still running."]
        elif existing.site_id != site.pk or existing.workflow_name != workflow.name:
            errors["job"] = [f"Job {existing.pk} runs '{existing.workflow_name}' on site '{existing.site_name}'."]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        if existing is not None:
            job = Job.objects.select_for_update().get(pk=existing.pk)
            added = [p for p, _ in items if p not in set(job.paths)]
            if added:
                job.paths = [*job.paths, *added]
                job.paths_text = "\n" + "\n".join(job.paths)
                job.save(update_fields=["paths", "paths_text"])
        else:
            job = Job.objects.create(
                workflow=workflow, workflow_name=workflow.name, definition=workflow.definition(), site=site,
                site_name=site.name, queue=queue, discovery=discovery,
                paths=[p for p, _ in items], paths_text="\n" + "\n".join(p for p, _ in items),
                fields=fields, include=request.include, exclude=request.exclude,
                ignore_site_includes=request.ignore_site_includes,
                ignore_site_excludes=request.ignore_site_excludes, launched_via=via,
                owner=actor if getattr(actor, "is_authenticated", False) else None, clientkey=clientkey,
                schedule_id=request.schedule_id)
        start(job, items)
    return job


def start(job: Job, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Create the job's first tasks for ``items`` and send what is ready."""
    if job.discovery == "recursive":
        engine.create_discovery_tasks(job, [path for path, _ in items])
    else:
        entries = [dag.Entry(path=path, type=str(extra.pop("type", "file")), size=extra.pop("size", None),
                             state=extra.pop("state", None), extra=extra) for path, extra in items]
        engine.plan_entries(job, entries, record_unmatched_directories=True)
    engine.advance(job)


def _may_control(job: Job, actor: Any) -> bool:
    return job.owner_id == getattr(actor, "pk", None) or permissions.has_object_perm(
        actor, job, permissions.CHANGE)


@transaction.atomic
def pause_job(job: Job, *, actor: Any) -> Job:
    """Stop sending the job's tasks; those running finish (Pausing, then Paused)."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.state in (JobState.PAUSING, JobState.PAUSED):
        return job
    if job.state not in JOB_DISPATCHING:
        raise Conflict(f"Job {job.pk} is {job.get_state_display().lower()}: only a running job can be paused.")
    job.transition(JobState.PAUSING, paused_by=actor if getattr(actor, "is_authenticated", False) else None)
    engine.settle_job(job)
    job.refresh_from_db()
    return job


@transaction.atomic
def resume_job(job: Job, *, actor: Any) -> Job:
    """Send the paused job's ready tasks again."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.state not in (JobState.PAUSING, JobState.PAUSED):
        raise Conflict(f"Job {job.pk} is {job.get_state_display().lower()}: only a paused job can be resumed.")
    failing = job.paths_failed > 0 or job.tasks_failed > 0
    if job.started is None and not failing:
        job.transition(JobState.PENDING)
    else:
        job.transition(dag.job_running_state(failures=failing))
    engine.advance(job)
    job.refresh_from_db()
    return job


@transaction.atomic
def cancel_job(job: Job, *, actor: Any) -> Job:
    """Cancel the job: tasks not sent yet are cancelled at once, queued and running ones are told
    to stop (Cancelling / Dequeuing until every agent has answered or the sweeper gave up)."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.state in JOB_CANCELLING:
        return job
    if job.state in JOB_TERMINAL:
        raise Conflict(f"Job {job.pk} is {job.get_state_display().lower()}: it has finished.")
    now = timezone.now()
    by = actor if getattr(actor, "is_authenticated", False) else None
    unsent = list(Task.objects.filter(job=job, state=TaskState.PENDING, dispatched__isnull=True)
                  .values_list("pk", flat=True))
    count = Task.objects.filter(pk__in=unsent, state=TaskState.PENDING, dispatched__isnull=True).update(
        state=TaskState.CANCELLED, completed=now, result={"reason": "the job was cancelled"})
    Job.objects.filter(pk=job.pk).update(tasks_done=F("tasks_done") + count)
    engine.abort_waiting_paths(job, unsent, "not attempted: the job was cancelled")
    in_flight = list(Task.objects.filter(job=job, state__in=(TaskState.PENDING, TaskState.STARTED)))
    running = any(t.state == TaskState.STARTED for t in in_flight)
    job.refresh_from_db()
    job.transition(JobState.CANCELLING if running else JobState.DEQUEUING, cancelled_by=by)
    dispatch.signal_cancel(job, in_flight)
    engine.settle_job(job)
    job.refresh_from_db()
    return job


def resubmit_job(job: Job, *, actor: Any, clientkey: Any = None) -> Job | None:
    """A new job over the paths of ``job`` that failed, were aborted or never ran; None (no effect)
    while ``job`` is unfinished, as the reference says."""
    job.refresh_from_db()
    if job.state not in JOB_TERMINAL:
        return None
    again = list(JobStat.objects.filter(job=job).exclude(state__in=(PathState.PROCESSED, PathState.SKIPPED))
                 .values_list("path", "size"))
    if not again and job.paths_total == 0:
        again = [(p, None) for p in job.paths]
    if not again:
        raise Conflict(f"Job {job.pk} has no failed or unfinished paths to resubmit.")
    with transaction.atomic():
        new = Job.objects.create(
            workflow=job.workflow, workflow_name=job.workflow_name, definition=job.definition, site=job.site,
            site_name=job.site_name, queue=job.queue,
            # The failed entries are files already found: no discovery needed again.
            discovery=None if job.paths_total else job.discovery,
            paths=[p for p, _ in again][:MAX_PATHS], paths_text="\n" + "\n".join(p for p, _ in again[:MAX_PATHS]),
            fields=job.fields, include=job.include, exclude=job.exclude,
            ignore_site_includes=job.ignore_site_includes, ignore_site_excludes=job.ignore_site_excludes,
            launched_via=LaunchedVia.RESUBMIT, owner=actor if getattr(actor, "is_authenticated", False) else None,
            clientkey=clientkey, schedule_id=job.schedule_id, resubmitted_from=job)
        start(new, [(p, {"size": s} if s is not None else {}) for p, s in again])
    return new


def delete_job(job: Job, *, actor: Any) -> None:
    """Delete a finished job with its tasks and path records."""
    job.refresh_from_db()
    if job.state not in JOB_TERMINAL:
        raise Conflict(f"Job {job.pk} is {job.get_state_display().lower()}: cancel it first; only finished "
                       "jobs can be deleted.")
    job.delete()


__all__ = ["LaunchRequest", "cancel_job", "delete_job", "launch", "pause_job", "resubmit_job", "resume_job",
           "start"]
