"""The engine: turns discovered entries into task rows, applies the agents' reports, and moves
jobs forward.

Everything here runs in the hub (web requests for launches, the hub worker for reports, the
sweeper), inside one transaction per call; messages go out after the commit (``dispatch``).
Planning decisions (routing, batching, readiness, skip propagation, final states) are the pure
functions of ``workflows.dag``; this module loads rows into them and writes the answers back.

Counters on ``Job`` are updated with ``F()`` expressions as results arrive, so a job's progress
is one row and two workers finishing different tasks of one job never lose an update. A report
is applied only if its task's conditional transition succeeds, so a duplicated or late report
(Celery may redeliver, an agent may report twice) changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from sites.models import DEFAULT_QUEUE, ExternalTarget, Site
from sites.services.site_tasks import report_time
from workflows import dag, dispatch
from workflows.definitions import TASKS
from workflows.models import Job, JobStat, JobStatHistory, Task, TaskDependency
from workflows.models.jobs import path_digest
from workflows.states import (
    JOB_CANCELLING,
    JOB_DISPATCHING,
    JOB_TERMINAL,
    TASK_TERMINAL,
    JobState,
    PathState,
    TaskState,
)

logger = logging.getLogger(__name__)

DISCOVERY_TASK = "recursive_navigate"
# Directories handed to one discovery task (each gets one page listed per task).
DISCOVERY_BATCH = 50
DEFAULT_MAX_ENTRIES = 1000
GIB = 1024**3
MESSAGE_LIMIT = 2000
# enable_auto_file_batch_sizing: aim for batches of about a minute, from the last finished ones.
AUTO_BATCH_SECONDS = 60.0
AUTO_BATCH_SAMPLES = 20
AUTO_BATCH_MIN = 10
AUTO_BATCH_MAX = 10_000
# Tasks of one job queued or running at once (see ``advance``).
MAX_IN_FLIGHT = 32


# --- planning ------------------------------------------------------------------------------------

@dataclass
class _Stat:
    path: str
    state: str
    message: str = ""
    size: int | None = None
    task: Task | None = None


def _short(message: Any) -> str:
    return str(message or "")[:MESSAGE_LIMIT]


def _increment(job: Job, **counters: int) -> None:
    changes = {name: F(name) + value for name, value in counters.items() if value}
    if changes:
        Job.objects.filter(pk=job.pk).update(**changes)


class _Targets:
    """The external targets a job may migrate to, and which one each path goes to."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._targets = list(
            ExternalTarget.objects.filter(available_on_sites=site, enabled=True, backup_only=False,
                                          bucket__soft_deleting=False)
            .select_related("space", "bucket").prefetch_related("available_on_sites").order_by("name"))
        self._regex = {t.pk: re.compile(t.local_file_regex) for t in self._targets}

    def choose(self, path: str) -> tuple[ExternalTarget | None, str]:
        inside = [t for t in self._targets if _inside(path, t.space.mountpoint)]
        if not inside:
            return None, f"no external target on site '{self.site.name}' covers this path's space"
        for target in inside:
            if self._regex[target.pk].search(path):
                return target, ""
        return None, f"no external target of space '{inside[0].space.name}' matches this path"


def _inside(path: str, mountpoint: str) -> bool:
    mountpoint = mountpoint.rstrip("/") or "/"
    return path == mountpoint or path.startswith(mountpoint + "/") or mountpoint == "/"


def _site_by_name(names: Iterable[str], cache: dict[str, Site | None]) -> None:
    missing = [n for n in set(names) if n not in cache]
    if missing:
        found = {s.name: s for s in Site.objects.filter(name__in=missing)}
        for name in missing:
            cache[name] = found.get(name)


def create_discovery_tasks(job: Job, paths: Sequence[str], *, parent: Task | None = None,
                           marker: str = "") -> list[Task]:
    """Discovery tasks over ``paths`` (one task per ``DISCOVERY_BATCH``; a ``marker`` continues
    one directory's listing and then takes a task of its own)."""
    options = job.definition.get("discovery_options") or {}
    kwargs: dict[str, Any] = {"max_entries": int(options.get("max_entries") or DEFAULT_MAX_ENTRIES),
                              "skip_missing": bool(options.get("skip_missing", False))}
    if marker:
        kwargs["marker"] = marker
    tasks = []
    for start in range(0, len(paths), DISCOVERY_BATCH):
        chunk = list(paths[start:start + DISCOVERY_BATCH])
        name = f"Discover {chunk[0]}" + (f" and {len(chunk) - 1} more" if len(chunk) > 1 else "")
        tasks.append(Task(job=job, tasktype=DISCOVERY_TASK, friendly_name=name[:255], site_id=job.site_id,
                          site_name=job.site_name, queue=job.queue, internal=True, kwargs=kwargs,
                          paths=[{"path": p} for p in chunk], path_count=len(chunk),
                          dynamic_parents=[parent.pk] if parent is not None else []))
    tasks = Task.objects.bulk_create(tasks)
    _increment(job, tasks_total=len(tasks), discovery_pending=len(tasks))
    return tasks


def plan_entries(job: Job, entries: Sequence[dag.Entry], *, parent: Task | None = None,
                 record_unmatched_directories: bool = False) -> list[Task]:
    """Route ``entries`` to the job's rules, batch them, and create each batch's chain of tasks.

    Entries already in the job (a path given twice, a directory listed again after a redelivered
    discovery) are dropped, so re-planning is harmless. Entries no rule takes are recorded as
    skipped with the reason (directories only when asked: discovery walks them anyway); entries
    that need a target and have none are recorded as failed. Returns the tasks created (the first
    step of each chain is ready; later steps wait for their parent).
    """
    entries = _new_entries(job, entries)
    if not entries:
        return []
    site = job.site
    rules = dag.compile_rules(job.definition.get("filter_rules") or [], job.fields or {})
    routing = dag.route(
        entries, rules, include=tuple(job.include or ()), exclude=tuple(job.exclude or ()),
        site_include=() if job.ignore_site_includes or site is None else tuple(site.include or ()),
        site_exclude=() if job.ignore_site_excludes or site is None else tuple(site.exclude or ()))
    stats: list[_Stat] = [
        _Stat(entry.path, PathState.SKIPPED, reason, entry.size) for entry, reason in routing.unmatched
        if record_unmatched_directories or entry.type != "directory"]
    tasks: list[Task] = []
    links: list[tuple[int, int]] = []  # (index of parent in tasks, index of child)
    waiting: list[tuple[dag.Entry, int]] = []  # (entry, index in tasks of its chain's first step)
    targets = _Targets(site) if site is not None else None
    sites: dict[str, Site | None] = {}
    max_files = _batch_files(site)
    max_bytes = int(getattr(site, "file_batch_gb", 10) or 10) * GIB
    for rule in rules:
        routed = routing.by_rule.get(rule.index) or []
        if not routed:
            continue
        needs_target = [i for i, step in enumerate(rule.steps) if TASKS[step.name].needs_target]
        groups: dict[str, list[dag.Entry]] = defaultdict(list)
        chosen: dict[str, ExternalTarget] = {}
        for entry in routed:
            if not needs_target:
                groups[""].append(entry)
                continue
            target, reason = targets.choose(entry.path) if targets is not None else (None, "the site is gone")
            if target is None:
                stats.append(_Stat(entry.path, PathState.FAILED, reason, entry.size))
                continue
            chosen[target.endpoint_name] = target
            groups[target.endpoint_name].append(entry)
        _site_by_name((s.site for s in rule.steps if s.site), sites)
        for endpoint, grouped in groups.items():
            problem = _chain_problem(rule, chosen.get(endpoint), sites)
            if problem:
                stats.extend(_Stat(e.path, PathState.FAILED, problem, e.size) for e in grouped)
                continue
            for batch in dag.batches(grouped, max_files=max_files, max_bytes=max_bytes):
                first = len(tasks)
                items = [e.item() for e in batch]
                for number, step in enumerate(rule.steps):
                    step_site = sites[step.site] if step.site else site
                    queue = step.queue or (job.queue if step_site == site else DEFAULT_QUEUE)
                    kwargs = dict(step.kwargs)
                    if number in needs_target:
                        kwargs["target"] = endpoint
                    tasks.append(Task(
                        job=job, tasktype=step.name, site=step_site,
                        site_name=step_site.name if step_site else job.site_name, queue=queue, rule=rule.index,
                        step=number, is_last_step=number == len(rule.steps) - 1, kwargs=kwargs,
                        paths=items if number == 0 else [], path_count=len(items) if number == 0 else 0,
                        byte_count=sum(e.size or 0 for e in batch) if number == 0 else 0,
                        dynamic_parents=[parent.pk] if parent is not None and number == 0 else [],
                        friendly_name=f"{step.name} {len(batch)} path{'s' if len(batch) != 1 else ''}"
                                      + (f" on {step_site.name}" if step_site and step_site != site else "")))
                    if number:
                        links.append((first + number - 1, first + number))
                waiting.extend((entry, first) for entry in batch)
    tasks = Task.objects.bulk_create(tasks)
    TaskDependency.objects.bulk_create(
        [TaskDependency(parent=tasks[p], child=tasks[c]) for p, c in links])
    # Each waiting path points at the first step of its chain (known once the rows exist).
    stats.extend(_Stat(entry.path, PathState.PENDING, "", entry.size, tasks[index]) for entry, index in waiting)
    _write_stats(job, stats, history=False)
    finished = [s for s in stats if s.state != PathState.PENDING]
    _increment(job, tasks_total=len(tasks), paths_total=len(stats),
               bytes_total=sum(s.size or 0 for s in stats),
               **_final_counts(finished))
    return tasks


def _chain_problem(rule: dag.Rule, target: ExternalTarget | None, sites: Mapping[str, Site | None]) -> str:
    for step in rule.steps:
        if step.site and sites.get(step.site) is None:
            return f"site '{step.site}' of step '{step.name}' does not exist"
        if step.site and target is not None and TASKS[step.name].needs_target:
            if not any(s.name == step.site for s in target.available_on_sites.all()):
                return f"target '{target.name}' is not available on site '{step.site}' (step '{step.name}')"
    return ""


def _batch_files(site: Site | None) -> int:
    """Files per batch: the site's ``file_batch_size``, or - with ``enable_auto_file_batch_sizing``
    - what the site's recent batches say fits ``AUTO_BATCH_SECONDS`` (never more than
    ``AUTO_BATCH_MAX``; the byte limit still applies)."""
    configured = max(1, int(getattr(site, "file_batch_size", 100) or 100))
    if site is None or not site.enable_auto_file_batch_sizing:
        return configured
    recent = Task.objects.filter(site=site, internal=False, state__in=(TaskState.SUCCESS, TaskState.ERROR),
                                 started__isnull=False, completed__isnull=False, path_count__gt=0)
    samples = [(t.path_count, t.byte_count, (t.completed - t.started).total_seconds())
               for t in recent.order_by("-completed").only("path_count", "byte_count", "started", "completed")
               [:AUTO_BATCH_SAMPLES]]
    return dag.auto_batch_files(samples, target_seconds=AUTO_BATCH_SECONDS, minimum=min(configured, AUTO_BATCH_MIN),
                                maximum=AUTO_BATCH_MAX)


def _new_entries(job: Job, entries: Sequence[dag.Entry]) -> list[dag.Entry]:
    unique: dict[str, dag.Entry] = {}
    for entry in entries:
        unique.setdefault(path_digest(entry.path), entry)
    known: set[str] = set()
    keys = list(unique)
    for start in range(0, len(keys), 500):
        known.update(JobStat.objects.filter(job=job, path_key__in=keys[start:start + 500])
                     .values_list("path_key", flat=True))
    return [entry for key, entry in unique.items() if key not in known]


def _final_counts(stats: Iterable[_Stat]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for stat in stats:
        counts["paths_done"] += 1
        counts[f"paths_{stat.state}"] += 1
        if stat.state == PathState.PROCESSED:
            counts["bytes_processed"] += stat.size or 0
    return counts


def _write_stats(job: Job, stats: Sequence[_Stat], *, history: bool, tasktype: str = "") -> None:
    """Insert or update each path's JobStat (one row per path of the job) and, with ``history``,
    append what happened to each path."""
    if not stats:
        return
    now = timezone.now()
    rows = {}
    for stat in stats:
        key = path_digest(stat.path)
        rows[key] = JobStat(job=job, path=stat.path, path_key=key, task=stat.task, state=stat.state,
                            message=_short(stat.message), size=stat.size, updated=now)
    JobStat.objects.bulk_create(list(rows.values()), update_conflicts=True, unique_fields=["job", "path_key"],
                                update_fields=["task", "state", "message", "size", "updated"], batch_size=500)
    if not history:
        return
    ids: dict[str, int] = {}
    keys = list(rows)
    for start in range(0, len(keys), 500):
        ids.update(JobStat.objects.filter(job=job, path_key__in=keys[start:start + 500])
                   .values_list("path_key", "pk"))
    JobStatHistory.objects.bulk_create(
        [JobStatHistory(jobstat_id=ids[key], task=row.task, tasktype=tasktype, state=row.state,
                        message=row.message, created=now) for key, row in rows.items() if key in ids],
        batch_size=500)


# --- reports -----------------------------------------------------------------------------------------

@transaction.atomic
def record_result(report: Mapping[str, Any]) -> Task | None:
    """Apply an agent's report about a job task (``agent.contract.TaskResult``)."""
    task = Task.objects.select_related("job", "job__site").filter(task_id=_uuid(report.get("task_id"))).first()
    if task is None:
        logger.warning("report for unknown job task %s ignored", report.get("task_id"))
        return None
    job = task.job
    state, at = report.get("state"), report_time(report.get("at"))
    node = _short(report.get("node"))[:255]
    if state == "STARTED":
        if task.transition(TaskState.STARTED, started=at, node=node or task.node):
            if job.state == JobState.PENDING:
                job.transition(JobState.STARTED, started=at, state_reason="")
            elif job.started is None:
                Job.objects.filter(pk=job.pk, started__isnull=True).update(started=at)
        return task
    if state == "PROGRESS":
        if task.state in (TaskState.PENDING, TaskState.STARTED):
            Task.objects.filter(pk=task.pk, state__in=(TaskState.PENDING, TaskState.STARTED)).update(
                result={"progress": report.get("results")}, node=node or task.node)
        return task
    if state == "FAILURE":
        _apply_failure(task, _short(report.get("error") or "The agent reported a failure."), at, node)
    elif state == "SUCCESS":
        results = report.get("results") if isinstance(report.get("results"), Mapping) else {}
        outcomes = results.get("outcomes") if isinstance(results.get("outcomes"), list) else None
        if outcomes is None:
            _apply_failure(task, "The agent's result carried no per-path outcomes.", at, node)
        elif task.internal:
            _apply_discovery(task, outcomes, at, node)
        else:
            _apply_outcomes(task, outcomes, at, node)
    else:
        logger.warning("job task %s: unknown report state %r ignored", task.task_id, state)
        return task
    advance(job, candidates=_children_ids([task.pk]))
    return task


def _uuid(value: Any) -> Any:
    import uuid

    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def _finish_task(task: Task, state: str, **fields: Any) -> bool:
    """Finish ``task`` (conditionally) and count it on its job; False if it had finished already."""
    fields.setdefault("completed", timezone.now())
    if not task.transition(state, **fields):
        return False
    _increment(task.job, tasks_done=1, tasks_failed=1 if state in (TaskState.FAILURE, TaskState.ERROR) else 0,
               discovery_pending=-1 if task.internal else 0)
    return True


def _apply_failure(task: Task, error: str, at: datetime, node: str) -> None:
    job = task.job
    cancelled = job.state in JOB_CANCELLING
    state = TaskState.CANCELLED if cancelled else TaskState.FAILURE
    if not _finish_task(task, state, completed=at, result={"error": error}, node=node or task.node,
                        started=task.started or at):
        return
    stats = [_Stat(item.get("path", ""), PathState.ABORTED if cancelled else PathState.FAILED, error,
                   item.get("size"), task) for item in task.paths or [] if isinstance(item, Mapping)]
    if task.internal:
        # A discovery batch that failed as a whole: its paths are the job's failures.
        stats = [s for s in stats if s.path]
        _write_stats(job, stats, history=True, tasktype=task.tasktype)
        _increment(job, paths_total=len(stats), **_final_counts(stats))
    else:
        _write_stats(job, stats, history=True, tasktype=task.tasktype)
        _increment(job, **_final_counts(stats))
    if not cancelled and job.state == JobState.STARTED:
        job.transition(JobState.FAILING)


def _outcome_map(task: Task, outcomes: Sequence[Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Pair each input item with its outcome (same order, as the contract says; by path if not)."""
    given = [item for item in task.paths or [] if isinstance(item, Mapping)]
    valid = [o for o in outcomes if isinstance(o, Mapping) and isinstance(o.get("path"), str)]
    if len(valid) == len(given) and all(o["path"] == i.get("path") for o, i in zip(valid, given, strict=True)):
        return list(zip(given, valid, strict=True))
    by_path = {o["path"]: o for o in valid}
    missing = {"status": PathState.FAILED, "message": "the agent reported no outcome for this path"}
    return [(item, by_path.get(item.get("path"), {**missing, "path": item.get("path")})) for item in given]


def _status(outcome: Mapping[str, Any]) -> str:
    status = outcome.get("status")
    return status if status in (PathState.PROCESSED, PathState.FAILED, PathState.ABORTED, PathState.SKIPPED) \
        else PathState.FAILED


def _apply_outcomes(task: Task, outcomes: Sequence[Any], at: datetime, node: str) -> None:
    job = task.job
    pairs = _outcome_map(task, outcomes)
    summary: dict[str, int] = defaultdict(int)
    for _item, outcome in pairs:
        summary[_status(outcome)] += 1
    cancelled = job.state in JOB_CANCELLING and summary[PathState.ABORTED]
    if cancelled:
        state = TaskState.CANCELLED
    elif summary[PathState.FAILED] or summary[PathState.ABORTED]:
        state = TaskState.ERROR
    else:
        state = TaskState.SUCCESS
    if not _finish_task(task, state, completed=at, node=node or task.node, started=task.started or at,
                        result={"summary": dict(summary)}):
        return
    stats = []
    for item, outcome in pairs:
        status = _status(outcome)
        size = outcome.get("size") if isinstance(outcome.get("size"), int) else item.get("size")
        message = outcome.get("message") or ("" if status == PathState.PROCESSED else status)
        stats.append(_Stat(str(item.get("path")), status, message, size, task))
    _write_stats(job, stats, history=True, tasktype=task.tasktype)
    ended = [s for s in stats if s.state != PathState.PROCESSED or task.is_last_step]
    _increment(job, **_final_counts(ended))
    # The processed paths go on to the next step of the chain (its only child).
    following = dag.next_items(task.paths or [], [o for _i, o in pairs])
    if not task.is_last_step:
        Task.objects.filter(parent_links__parent=task, state=TaskState.PENDING).update(
            paths=following, path_count=len(following),
            byte_count=sum(i.get("size") or 0 for i in following if isinstance(i.get("size"), int)))
    if state == TaskState.ERROR and job.state == JobState.STARTED:
        job.transition(JobState.FAILING)


def _apply_discovery(task: Task, outcomes: Sequence[Any], at: datetime, node: str) -> None:
    job = task.job
    pairs = _outcome_map(task, outcomes)
    failed = [(item, o) for item, o in pairs if _status(o) != PathState.PROCESSED]
    state = TaskState.ERROR if any(_status(o) == PathState.FAILED for _i, o in failed) else TaskState.SUCCESS
    if not _finish_task(task, state, completed=at, node=node or task.node, started=task.started or at,
                        result={"summary": {"listed": len(pairs) - len(failed), "not_listed": len(failed)}}):
        return
    entries: list[dag.Entry] = []
    directories: list[str] = []
    continuations: list[tuple[str, str]] = []
    for _item, outcome in pairs:
        if _status(outcome) != PathState.PROCESSED:
            continue
        for entry in outcome.get("entries") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                size = entry.get("size")
                entries.append(dag.Entry(path=entry["path"], type=str(entry.get("type") or "file"),
                                         size=size if isinstance(size, int) else None))
        directories.extend(d for d in outcome.get("directories") or [] if isinstance(d, str))
        marker = outcome.get("next_marker")
        if isinstance(marker, str) and marker:
            continuations.append((outcome["path"], marker))
    stats = [_Stat(str(item.get("path")), _status(o), o.get("message") or _status(o), None, task)
             for item, o in failed]
    _write_stats(job, stats, history=True, tasktype=task.tasktype)
    _increment(job, paths_total=len(stats), **_final_counts(stats))
    if state == TaskState.ERROR and job.state == JobState.STARTED:
        job.transition(JobState.FAILING)
    if job.state in JOB_CANCELLING or job.state in JOB_TERMINAL:
        return
    plan_entries(job, entries, parent=task)
    if directories:
        create_discovery_tasks(job, directories, parent=task)
    for path, marker in continuations:
        create_discovery_tasks(job, [path], parent=task, marker=marker)


def abort_waiting_paths(job: Job, task_ids: Sequence[int], message: str) -> int:
    """Record the paths still waiting in ``task_ids`` (cancelled before they were sent) as
    aborted, with history, and count them on the job; returns how many."""
    stats = [_Stat(path, PathState.ABORTED, message, size, task) for path, size, task in (
        (row.path, row.size, row.task) for row in JobStat.objects.filter(
            job=job, state=PathState.PENDING, task_id__in=list(task_ids)).select_related("task"))]
    _write_stats(job, stats, history=True, tasktype="cancel")
    _increment(job, **_final_counts(stats))
    return len(stats)


# --- moving jobs forward --------------------------------------------------------------------------

def _children_ids(task_ids: Iterable[int]) -> list[int]:
    return list(TaskDependency.objects.filter(parent_id__in=list(task_ids)).values_list("child_id", flat=True))


def advance(job: Job, *, candidates: Iterable[int] | None = None) -> None:
    """Skip what can no longer run, send what is ready (if the job may dispatch), and settle the
    job's state.

    ``candidates`` are the tasks whose parents just finished (None: every waiting task of the
    job); those left with no input are skipped, and the skip follows their chains. Sending keeps
    at most ``MAX_IN_FLIGHT`` tasks of a job queued or running, oldest first, so a pause or a
    cancel takes effect within a window instead of after everything was queued. A waiting task
    has input exactly when it can run (a chain step gets its paths when its parent finishes).
    """
    job.refresh_from_db()
    _skip_starved(job, candidates)
    if job.state in JOB_DISPATCHING:
        in_flight = Task.objects.filter(job=job).filter(
            Q(state=TaskState.STARTED) | Q(state=TaskState.PENDING, dispatched__isnull=False)).count()
        room = MAX_IN_FLIGHT - in_flight
        ready = list(Task.objects.filter(job=job, state=TaskState.PENDING, dispatched__isnull=True,
                                         path_count__gt=0).order_by("id")[:max(room, 0)])
        if ready:
            reasons = dispatch.dispatch(job, ready)
            reason = ("Waiting: " + "; ".join(reasons) + ".") if reasons else ""
            if reason != job.state_reason:
                Job.objects.filter(pk=job.pk).update(state_reason=reason)
                job.state_reason = reason
    settle_job(job)


def _skip_starved(job: Job, candidates: Iterable[int] | None) -> None:
    """Skip waiting tasks that nothing reached (their parents finished without handing them a
    path, or failed), and everything after them in their chains."""
    waiting_qs = Task.objects.filter(job=job, state=TaskState.PENDING, dispatched__isnull=True, path_count=0,
                                     parent_links__isnull=False)
    if candidates is not None:
        waiting_qs = waiting_qs.filter(pk__in=list(candidates))
    waiting = list(waiting_qs.distinct())
    while waiting:
        by_id = {t.pk: t for t in waiting}
        edges = list(TaskDependency.objects.filter(child_id__in=by_id).values_list("child_id", "parent_id",
                                                                                     "parent__state"))
        parents: dict[int, list[int]] = defaultdict(list)
        views: dict[int, dag.NodeView] = {}
        for child, parent, parent_state in edges:
            parents[child].append(parent)
            views.setdefault(parent, dag.NodeView(id=parent, state=parent_state, parents=(), dispatched=True))
        for task in waiting:
            views[task.pk] = dag.NodeView(id=task.pk, state=task.state, parents=tuple(parents[task.pk]),
                                          dispatched=False)
        _ready, skip_ids = dag.settle(views.values(), has_input={t.pk: t.path_count > 0 for t in waiting})
        skipped = [by_id[i] for i in skip_ids if i in by_id]
        for task in skipped:
            _finish_task(task, TaskState.SKIPPED, result={"reason": "nothing reached this step"})
        waiting = list(Task.objects.filter(parent_links__parent__in=[t.pk for t in skipped],
                                           state=TaskState.PENDING, dispatched__isnull=True).distinct())


def _anything_running(job: Job) -> bool:
    return Task.objects.filter(job=job).filter(
        Q(state=TaskState.STARTED) | Q(state=TaskState.PENDING, dispatched__isnull=False)).exists()


def settle_job(job: Job) -> None:
    """Finish the job when nothing is left, or complete a pause or a cancel."""
    job.refresh_from_db()
    if job.state in JOB_TERMINAL:
        return
    now = timezone.now()
    if job.state in JOB_CANCELLING:
        if not _anything_running(job):
            Task.objects.filter(job=job, state=TaskState.PENDING).update(state=TaskState.CANCELLED, completed=now)
            job.transition(JobState.CANCELLED, completed=now, state_reason="")
        elif job.state == JobState.CANCELLING and not Task.objects.filter(job=job, state=TaskState.STARTED).exists():
            job.transition(JobState.DEQUEUING)
        return
    if job.tasks_done >= job.tasks_total and job.discovery_pending <= 0:
        final = dag.job_final_state(cancelled=False, processed=job.paths_processed, failed=job.paths_failed,
                                    aborted=job.paths_aborted, skipped=job.paths_skipped,
                                    task_failures=Task.objects.filter(job=job, state=TaskState.FAILURE,
                                                                      retries__isnull=True).count())
        job.transition(final, completed=now, state_reason="")
        return
    if job.state == JobState.PAUSING and not _anything_running(job):
        job.transition(JobState.PAUSED)


def requeue_paths(task: Task, reason: str) -> Task | None:
    """Fail ``task`` for ``reason`` and, once per chain step, run its paths again as a new task
    (the sweeper's answer to a node that stopped beating). Children follow the new task."""
    job = task.job
    if task.retry_of_id is not None or task.state in TASK_TERMINAL:
        _apply_failure(task, reason, timezone.now(), task.node)
        return None
    retry = Task.objects.create(
        job=job, tasktype=task.tasktype, friendly_name=task.friendly_name, site_id=task.site_id,
        site_name=task.site_name, queue=task.queue, dynamic_parents=task.dynamic_parents, rule=task.rule,
        step=task.step, is_last_step=task.is_last_step, internal=task.internal, kwargs=task.kwargs,
        paths=task.paths, path_count=task.path_count, byte_count=task.byte_count, retry_of=task)
    if not task.transition(TaskState.FAILURE, completed=timezone.now(),
                           result={"error": f"{reason}; its paths were sent again as task {retry.pk}"}):
        retry.delete()
        return None
    # Not counted as a failure: the paths are not lost, they moved to the retry.
    TaskDependency.objects.filter(parent=task).update(parent=retry)
    TaskDependency.objects.bulk_create([TaskDependency(parent_id=link.parent_id, child=retry)
                                        for link in TaskDependency.objects.filter(child=task)])
    _increment(job, tasks_total=1, tasks_done=1)  # discovery_pending stays: the retry carries it
    JobStat.objects.filter(job=job, task=task).update(task=retry)
    return retry
