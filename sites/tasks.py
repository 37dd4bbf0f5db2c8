"""Hub-side Celery tasks that apply agents' reports. Thin: each calls one service."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from agent.contract import HubTask
from sites.models import Site
from sites.services import inventory, nodes, site_tasks

logger = logging.getLogger(__name__)


@shared_task(name=HubTask.HEARTBEAT, ignore_result=True)
def heartbeat(beat: dict[str, Any]) -> None:
    try:
        nodes.record_heartbeat(beat)
    except nodes.HeartbeatRejected as exc:
        logger.warning("heartbeat rejected: %s", exc)


@shared_task(name=HubTask.INVENTORY, ignore_result=True)
def inventory_report(report: dict[str, Any]) -> None:
    try:
        inventory.apply_inventory(report)
    except (KeyError, TypeError, ValueError, Site.DoesNotExist) as exc:
        logger.warning("inventory report from %s rejected: %r", report.get("site"), exc)


@shared_task(name=HubTask.TASK_RESULT, ignore_result=True)
def task_result(report: dict[str, Any]) -> None:
    site_tasks.record_result(report)
