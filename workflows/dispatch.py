"""Sending job tasks to the sites' agents, and telling agents to stop.

A task is marked ``dispatched`` in the database first (a conditional update, so two engines
advancing the same job cannot send it twice) and published only after the transaction commits:
an agent never receives a task whose row was rolled back. A task goes only to a queue that has a
live node; otherwise it stays PENDING and the job's ``state_reason`` says what it waits for (the
sweeper tries again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agent.contract import AgentTask, broker_queue, control_queue
from sites.models import Node, Site, heartbeat_cutoff
from workflows.definitions import TASKS
from workflows.models import Job, Task
from workflows.states import TaskState

logger = logging.getLogger(__name__)


def live_queues(site_ids: Iterable[int]) -> set[tuple[int, str]]:
    """``(site id, queue name)`` pairs served by at least one node that is beating."""
    rows = Node.objects.filter(site_id__in=set(site_ids), last_heartbeat__gte=heartbeat_cutoff()).values_list(
        "site_id", "queues__name")
    return {(site_id, name) for site_id, name in rows if name}


def dispatch(job: Job, tasks: list[Task]) -> list[str]:
    """Send ``tasks`` (ready, PENDING, not yet dispatched) unless their queue has no live node.

    Returns the reasons tasks are still waiting (empty when everything went), which the caller
    shows as the job's ``state_reason``.
    """
    if not tasks:
        return []
    serving = live_queues(t.site_id for t in tasks if t.site_id is not None)
    waiting: set[str] = set()
    now = timezone.now()
    for task in tasks:
        if task.site_id is None:
            _fail_unsendable(task, f"Site '{task.site_name}' no longer exists.")
            continue
        if (task.site_id, task.queue) not in serving:
            waiting.add(f"no live node serves queue '{task.queue}' of site '{task.site_name}'")
            continue
        sent = Task.objects.filter(pk=task.pk, state=TaskState.PENDING, dispatched__isnull=True).update(
            dispatched=now, attempts=F("attempts") + 1)
        if not sent:
            continue  # another engine sent it, or it was cancelled meanwhile
        message = dict(task.kwargs or {})
        message.update(paths=list(task.paths or []), jobid=job.pk)
        wire, routing, task_id, pk = TASKS[task.tasktype].wire, broker_queue(task.site_name, task.queue), \
            str(task.task_id), task.pk
        transaction.on_commit(lambda w=wire, r=routing, i=task_id, m=message, p=pk: _publish(p, i, w, r, m))
    return sorted(waiting)


def _publish(pk: int, task_id: str, name: str, queue: str, kwargs: dict[str, Any]) -> None:
    from hub.celery import app

    try:
        app.send_task(name, kwargs=kwargs, queue=queue, task_id=task_id)
    except Exception as exc:  # noqa: BLE001 - any broker failure is recorded on the task
        logger.warning("could not publish task %s (%s) to %s: %s", task_id, name, queue, exc)
        from workflows import engine

        engine.record_result({"task_id": task_id, "state": "FAILURE",
                              "error": f"The task could not be sent to the broker: {exc}"})


def _fail_unsendable(task: Task, reason: str) -> None:
    from workflows import engine

    engine.record_result({"task_id": str(task.task_id), "state": "FAILURE", "error": reason})


def signal_cancel(job: Job, tasks: list[Task]) -> None:
    """Ask every node of the tasks' sites to stop them (the agent aborts the rest of a batch at the
    next file boundary, and a queued one aborts all its paths when it arrives)."""
    by_site: dict[int, list[str]] = {}
    for task in tasks:
        if task.site_id is not None:
            by_site.setdefault(task.site_id, []).append(str(task.task_id))
    if not by_site:
        return
    sites = {s.pk: s.name for s in Site.objects.filter(pk__in=by_site)}
    nodes = list(Node.objects.filter(site_id__in=by_site).values_list("site_id", "name"))
    orders = [(control_queue(sites[site_id], node), {"task_ids": by_site[site_id]})
              for site_id, node in nodes if site_id in sites]
    transaction.on_commit(lambda: _publish_cancels(job.pk, orders))


def _publish_cancels(job_id: int, orders: list[tuple[str, dict[str, Any]]]) -> None:
    from hub.celery import app

    for queue, order in orders:
        try:
            app.send_task(AgentTask.CANCEL, kwargs={"order": order}, queue=queue)
        except Exception as exc:  # noqa: BLE001 - the sweeper finalises tasks that never stop
            logger.warning("job %s: could not send the cancel order to %s: %s", job_id, queue, exc)
