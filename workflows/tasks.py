"""Hub-side Celery tasks of the workflow engine. Thin: each calls one service."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from agent.contract import HubTask
from workflows import engine, sweeper

logger = logging.getLogger(__name__)

SWEEP_TASK = "hub.workflows.sweep"


@shared_task(name=HubTask.JOB_TASK_RESULT, ignore_result=True)
def task_result(report: dict[str, Any]) -> None:
    if not isinstance(report, dict):
        logger.warning("job task report of type %s ignored", type(report).__name__)
        return
    engine.record_result(report)


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep() -> None:
    done = sweeper.sweep()
    if any(vars(done).values()):
        logger.info("sweeper: %s", done)
