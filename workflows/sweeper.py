"""The periodic sweeper: nothing is ever left stuck without a state that says why.

Each run (``hub.workflows.sweep``, every ``SWEEP_INTERVAL`` seconds from the hub worker's beat,
or ``manage.py sweep_jobs``) does, per job, in its own short transaction with the job row locked
(``select_for_update(skip_locked=True)``: two sweepers never work on one job, and a sweeper never
waits behind a report being applied):

1. tasks STARTED longer than ``task_invalidation_timeout`` minutes are failed ("invalidated"), and
   tasks sent that long ago but never started have their paths sent again once;
2. tasks STARTED on a node that stopped beating, or whose agent restarted since (its heartbeat's
   ``started_at``), are failed, and their paths sent again once as a new task (to whichever live
   node takes it); a retry that also loses its node fails its paths;
3. cancelling jobs whose queued tasks were never picked up, or whose running tasks' node is gone,
   are finished (those tasks Cancelled);
4. jobs waiting for a queue with a live node get their ready tasks sent now that one may be back;
5. finished jobs older than ``jobs_ttl`` days are deleted, ``PURGE_BATCH`` at a time.

The whole run is time-boxed (``TIME_BOX`` seconds); what it did not reach waits for the next.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hub import configuration
from sites.models import Node, heartbeat_cutoff
from workflows import engine
from workflows.models import Job, Task
from workflows.states import JOB_ACTIVE, JOB_CANCELLING, JOB_TERMINAL, TaskState

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 30.0
TIME_BOX = 20.0
PURGE_BATCH = 500
# A queued task of a cancelled job that no agent picked up within this long is cancelled by the hub.
DEQUEUE_GRACE = timedelta(minutes=2)


@dataclass
class SweepReport:
    invalidated: int = 0
    requeued: int = 0
    lost: int = 0
    cancelled: int = 0
    advanced: int = 0
    purged: int = 0


def sweep(*, now=None, time_box: float = TIME_BOX) -> SweepReport:
    """One pass of the sweeper (see the module docstring)."""
    now = now or timezone.now()
    deadline = time.monotonic() + time_box
    report = SweepReport()
    invalid_before = now - timedelta(minutes=int(configuration.get("task_invalidation_timeout")))
    cutoff = heartbeat_cutoff(now)
    # Live nodes and when their agent (re)started: a task STARTED before its node's agent
    # restarted died with the old process (the broker may hand it out again much later, harmlessly).
    live = {(site_id, name): _agent_start(info) for site_id, name, info in
            Node.objects.filter(last_heartbeat__gte=cutoff).values_list("site_id", "name", "info")}
    job_ids = list(Job.objects.filter(state__in=JOB_ACTIVE).order_by("id").values_list("pk", flat=True))
    for job_id in job_ids:
        if time.monotonic() > deadline:
            break
        with transaction.atomic():
            job = Job.objects.select_for_update(skip_locked=True).filter(pk=job_id, state__in=JOB_ACTIVE).first()
            if job is None:
                continue
            _sweep_job(job, now=now, invalid_before=invalid_before, live=live, report=report)
    if time.monotonic() <= deadline:
        report.purged = purge(now=now)
    return report


def _agent_start(info: object) -> datetime | None:
    value = info.get("started_at") if isinstance(info, dict) else None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _lost(task: Task, live: dict[tuple[int, str], datetime | None]) -> str:
    """Why ``task`` (STARTED) can no longer finish, or ""."""
    if not task.node:
        return ""
    key = (task.site_id, task.node)
    if key not in live:
        return f"node '{task.node}' of site '{task.site_name}' stopped sending heartbeats while running it"
    restarted = live[key]
    if restarted is not None and task.started is not None and restarted > task.started:
        return f"the agent on node '{task.node}' of site '{task.site_name}' restarted while running it"
    return ""


def _sweep_job(job: Job, *, now, invalid_before, live: dict[tuple[int, str], datetime | None],
               report: SweepReport) -> None:
    started = list(Task.objects.filter(job=job, state=TaskState.STARTED).select_related("job"))
    for task in started:
        if task.started is not None and task.started < invalid_before:
            engine.record_result({"task_id": str(task.task_id), "state": "FAILURE", "error": (
                f"Invalidated: started {task.started:%Y-%m-%d %H:%M:%S} UTC and still running after the "
                "task_invalidation_timeout.")})
            report.invalidated += 1
        elif reason := _lost(task, live):
            if job.state in JOB_CANCELLING:
                engine.record_result({"task_id": str(task.task_id), "state": "FAILURE", "error": reason})
                report.cancelled += 1
            elif engine.requeue_paths(task, reason) is not None:
                report.requeued += 1
            else:
                report.lost += 1
    # Sent but never started for longer than a task may run: the agent that took the message
    # died before it could report (the broker gives such a message back only after its visibility
    # timeout, if ever). Send the paths again once.
    for task in Task.objects.filter(job=job, state=TaskState.PENDING, dispatched__lt=invalid_before) \
            .select_related("job"):
        if job.state in JOB_CANCELLING:
            continue
        if engine.requeue_paths(task, "sent but never started within the task_invalidation_timeout") is not None:
            report.requeued += 1
        else:
            report.lost += 1
    if job.state in JOB_CANCELLING:
        stale = Task.objects.filter(job=job, state=TaskState.PENDING, dispatched__lt=now - DEQUEUE_GRACE)
        for task in stale.select_related("job"):
            engine.record_result({"task_id": str(task.task_id), "state": "FAILURE",
                                  "error": "cancelled: no agent picked the queued task up"})
            report.cancelled += 1
    engine.advance(job)
    report.advanced += 1


def purge(*, now=None) -> int:
    """Delete finished jobs older than ``jobs_ttl`` days, in batches; returns how many went."""
    now = now or timezone.now()
    before = now - timedelta(days=int(configuration.get("jobs_ttl")))
    total = 0
    while True:
        ids = list(Job.objects.filter(state__in=JOB_TERMINAL).filter(Q(completed__lt=before))
                   .values_list("pk", flat=True)[:PURGE_BATCH])
        if not ids:
            return total
        Job.objects.filter(pk__in=ids).delete()
        total += len(ids)
