"""Sending orders to site agents and applying their answers.

``send_site_task`` creates the ``SettingsTask`` row and publishes the order only after the
surrounding transaction commits, so an agent can never receive an order for a row that was
rolled back, and a rolled-back request sends nothing. ``record_result`` applies an agent's
report with a conditional update, so duplicated or late reports are harmless.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agent.contract import AgentTask, broker_queue
from sites.models import DEFAULT_QUEUE, SettingsTask, Site

logger = logging.getLogger(__name__)

TASK_NAMES: dict[str, str] = {
    SettingsTask.TaskType.APPLY_SETTINGS: AgentTask.APPLY_SETTINGS,
    SettingsTask.TaskType.REPORT_SETTINGS: AgentTask.REPORT_SETTINGS,
    SettingsTask.TaskType.INVENTORY: AgentTask.INVENTORY,
    SettingsTask.TaskType.CREATE_SPACE: AgentTask.CREATE_SPACE,
    SettingsTask.TaskType.APPLY_SHARES: AgentTask.APPLY_SHARES,
    SettingsTask.TaskType.CONFIGURE_TARGET: AgentTask.CONFIGURE_TARGET,
    SettingsTask.TaskType.REMOVE_TARGET: AgentTask.REMOVE_TARGET,
    SettingsTask.TaskType.LIST_TARGET: AgentTask.LIST_TARGET,
    SettingsTask.TaskType.SYNC_ACCOUNTS: AgentTask.SYNC_ACCOUNTS,
}

# Hooks run when a task of a type finishes (e.g. a space becomes ready on a site).
_ON_FINISH: dict[str, list[Callable[[SettingsTask], None]]] = {}


def on_finish(tasktype: str) -> Callable[[Callable[[SettingsTask], None]], Callable[[SettingsTask], None]]:
    """Register ``func(task)`` to run (in the reporting transaction) when a ``tasktype`` task ends."""

    def register(func: Callable[[SettingsTask], None]) -> Callable[[SettingsTask], None]:
        _ON_FINISH.setdefault(tasktype, []).append(func)
        return func

    return register


def send_site_task(
    site: Site,
    tasktype: str,
    payload: dict[str, Any],
    *,
    actor: Any = None,
    friendly_name: str = "",
    queue: str = DEFAULT_QUEUE,
    sealed: dict[str, Any] | None = None,
) -> SettingsTask:
    """Record an order for ``site``'s agent and publish it once the transaction commits.

    ``payload`` is stored as the task's ``request`` and must not hold secrets: the API shows it.
    ``sealed`` (credentials) travels only in the published message, as ``credentials``: a
    Fernet token under the site's agent key, which the broker and its logs cannot read.
    """
    task = SettingsTask.objects.create(
        site=site,
        tasktype=tasktype,
        request=payload,
        friendly_name=friendly_name or SettingsTask.TaskType(tasktype).label,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    name, routing = TASK_NAMES[tasktype], broker_queue(site.name, queue)
    message = dict(payload)
    if sealed is not None:
        message["credentials"] = seal(site, sealed)
    transaction.on_commit(lambda: _publish(task.pk, str(task.task_id), name, routing, message))
    return task


def seal(site: Site, secrets: dict[str, Any]) -> str:
    """``secrets`` as a Fernet token only ``site``'s agents can open (their agent key)."""
    return Fernet(site.agent_key.encode()).encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def _publish(pk: int, task_id: str, name: str, queue: str, payload: dict[str, Any]) -> None:
    from hub.celery import app

    try:
        app.send_task(name, kwargs={"order": payload}, queue=queue, task_id=task_id)
    except Exception as exc:  # noqa: BLE001 - any broker failure is reported on the task row
        logger.warning("could not publish %s to %s: %s", name, queue, exc)
        SettingsTask.objects.filter(pk=pk, state=SettingsTask.State.PENDING).update(
            state=SettingsTask.State.FAILURE,
            completed=timezone.now(),
            results={"error": f"The order could not be sent to the broker: {exc}"},
        )


def report_time(value: object) -> datetime:
    """When an agent's report says something happened (``at``, ISO 8601 with a zone), else now."""
    parsed = parse_datetime(value) if isinstance(value, str) and value else None
    return parsed if parsed is not None and parsed.tzinfo is not None else timezone.now()


@transaction.atomic
def record_result(report: dict[str, Any]) -> SettingsTask | None:
    """Apply an agent's ``TaskResult``. Unknown ids and illegal transitions are ignored (logged)."""
    task = SettingsTask.objects.select_related("site").filter(task_id=report.get("task_id")).first()
    if task is None:
        logger.warning("result for unknown site task %s ignored", report.get("task_id"))
        return None
    state, at = report.get("state"), report_time(report.get("at"))
    if state == SettingsTask.State.STARTED:
        task.transition(SettingsTask.State.STARTED, started=at)
        return task
    if state not in SettingsTask.TERMINAL_STATES:
        logger.warning("site task %s: unknown state %r ignored", task.task_id, state)
        return task
    results = report.get("results")
    if state == SettingsTask.State.FAILURE:
        results = {"error": str(report.get("error") or "The agent reported a failure."), "results": results}
    if task.transition(state, completed=at, results=results, started=task.started or at):
        for hook in _ON_FINISH.get(task.tasktype, []):
            hook(task)
    return task
