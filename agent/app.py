"""The agent's Celery app: broker settings, delivery guarantees, and the tasks it serves.

Delivery, and why each setting:

* **JSON only** (``task_serializer``, ``accept_content``): the hub and the agent share nothing
  but ``agent.contract``; pickle would let whoever can write to the broker run code here.
* **acks_late** + ``task_reject_on_worker_lost``: a task is acknowledged when it ends, so a
  worker killed mid-task leaves the message to be delivered again (every task is idempotent:
  see ``agent.orders`` for the journal of state-changing orders, ``agent.actions`` for data).
* **prefetch 1** (``worker_prefetch_multiplier``): a worker reserves one message per process, so
  a long data task never sits behind another on a busy worker while an idle node could run it.
* **visibility timeout** (Redis; 12 h by default, ``visibility_timeout``): Redis hands an
  unacknowledged message to another worker after this long, so it must exceed the longest task
  or an hour-long migration would run twice at once. A crashed worker's tasks come back after
  the same delay (a clean stop requeues them at once).
* ``worker_cancel_long_running_tasks_on_connection_loss``: when the broker connection drops, the
  broker will redeliver the running tasks; cancelling them here avoids two copies running.
* No result backend: answers travel as reports to the hub's queue (``HubTask``), never through
  a result store or a database.

The filesystem transport uses the hub's folder layout (``<broker_dir>/queue`` in and out,
``processed``, ``control``), so a hub and an agent on one host (or a shared folder) talk through
it. It has no acknowledgements (a message is gone once read), so it suits a laboratory or a
demo; production sites use Redis or RabbitMQ. On RabbitMQ, raise the server's
``consumer_timeout`` (30 min by default) above the longest task for the same reason as Redis's
visibility timeout.

Tasks: the orders of ``agent.orders`` (named ``AgentTask.*``) and the data tasks (``HsmTask.*``),
whose work is the pure functions of ``agent.actions``, imported on first use. Both report to the
hub with ``TaskResult``: ``STARTED``, then ``SUCCESS`` with the results or ``FAILURE`` with the
error. Every process serves every task; the queue a message was sent to decides which worker
runs it.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from celery import Celery

from agent.config import AgentConfig
from agent.contract import DEFAULT_QUEUE, HsmTask, TaskResult, broker_queue
from agent.orders import ORDERS, OrderContext, apply_stored_settings, now_iso, report, run_order
from agent.state import StateDir

logger = logging.getLogger(__name__)

BROKER_SUBDIRS = ("queue", "processed", "control")
# HsmTask name -> function of agent.actions (``list`` is exported under the contract's name).
DATA_TASKS: dict[str, str] = {
    HsmTask.MIGRATE: "migrate",
    HsmTask.RECALL: "recall",
    HsmTask.REVERSE_STUB: "reverse_stub",
    HsmTask.DELETE: "delete",
    HsmTask.MOVE: "move",
    HsmTask.STAT: "stat",
    HsmTask.LIST: "list",
}
ACTIONS_MODULE = "agent.actions"
PROGRESS_INTERVAL = 30.0
FILESYSTEM_POLLING = 0.25


def broker_options(config: AgentConfig) -> dict[str, Any]:
    """``broker_transport_options`` for the configured broker (see the module docstring)."""
    if config.uses_filesystem_broker:
        folder = config.broker_dir
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # The transport polls its folder; a short interval makes orders and shutdowns prompt
            # at the cost of a directory listing per worker every quarter second.
            "polling_interval": FILESYSTEM_POLLING,
        }
    if config.broker_url.startswith(("redis://", "rediss://")):
        return {"visibility_timeout": config.visibility_timeout}
    return {}


def prepare_broker_dir(config: AgentConfig) -> None:
    """Create the filesystem transport's folders (the hub creates the same ones)."""
    if config.uses_filesystem_broker:
        for sub in BROKER_SUBDIRS:
            Path(config.broker_dir, sub).mkdir(parents=True, exist_ok=True)


def celery_settings(config: AgentConfig) -> dict[str, Any]:
    return {
        # "filesystem://" has no host, and kombu warns about it on every connection.
        "broker_url": "filesystem://localhost//" if config.broker_url == "filesystem://" else config.broker_url,
        "broker_transport_options": broker_options(config),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # wait for the broker rather than exit
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_default_queue": broker_queue(config.site, DEFAULT_QUEUE),
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_pool": config.pool,
        "enable_utc": True,
        "timezone": "UTC",
    }


class Runtime:
    """One process's agent: its Celery app, state directory and order context."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        key = config.agent_key.reveal() if config.agent_key is not None else None
        self.state = StateDir(config.state_dir, agent_key=key)
        # fixups=[]: never load Celery's Django fix-up, even if DJANGO_SETTINGS_MODULE is set
        # in the environment (the agent must not import Django).
        self.app = Celery(f"agent-{config.site}", fixups=[], set_as_current=False)
        self.app.conf.update(celery_settings(config))
        self.ctx = OrderContext(config=config, state=self.state, send=self.send)
        register_order_tasks(self)
        register_data_tasks(self)

    def send(self, name: str, kwargs: dict[str, Any]) -> None:
        """Publish a report (a ``HubTask``) to the hub's queue."""
        self.app.send_task(name, kwargs=kwargs, queue=self.config.hub_queue)

    def action_context(self, *, task_id: str, jobid: object) -> Any:
        """The ``agent.actions.ActionContext`` of one data task: the configured roots, targets
        opened from the state directory, and a cancel check on the state directory's flags."""
        actions = importlib.import_module(ACTIONS_MODULE)
        if not self.config.roots:
            raise ValueError("this agent has no roots configured (roots / AGENT_ROOTS): it may touch no file")
        ids = [task_id] + ([str(jobid)] if jobid not in (None, "") else [])
        last = {"at": 0.0, "answer": False}

        def should_cancel() -> bool:
            # Checked between chunks, possibly from many threads: look at the disk once a second.
            now = time.monotonic()
            if not last["answer"] and now - last["at"] >= 1.0:
                last["at"], last["answer"] = now, self.state.cancel_requested(ids)
            return bool(last["answer"])

        shown: list[Any] = [None]

        def progress(done: Any) -> None:
            if done == shown[0]:
                return
            shown[0] = done
            logger.info("task %s job=%s: %d/%d paths, %d/%d bytes", task_id, jobid, done.paths_done,
                        done.paths_total, done.bytes_done, done.bytes_total)

        return actions.ActionContext(roots=[str(root) for root in self.config.roots],
                                     open_target=self.state.open_target, should_cancel=should_cancel,
                                     progress=progress, progress_interval=PROGRESS_INTERVAL)


def register_order_tasks(runtime: Runtime) -> None:
    """One Celery task per order name, each a thin call of ``agent.orders.run_order``."""
    for name in ORDERS:
        runtime.app.task(name=name, bind=True, ignore_result=True)(_order_task(runtime, name))


def _order_task(runtime: Runtime, name: str) -> Any:
    def order_task(self: Any, order: Any = None, **extra: Any) -> None:
        if extra:
            logger.warning("%s[%s]: unexpected arguments %s ignored", name, self.request.id, sorted(extra))
        apply_stored_settings(runtime.ctx)
        run_order(runtime.ctx, name, order, task_id=str(self.request.id))

    order_task.__name__ = order_task.__qualname__ = name.replace(".", "_")
    return order_task


def register_data_tasks(runtime: Runtime) -> None:
    """One Celery task per ``HsmTask``: ``task(paths, jobid, **options)`` -> list of ``PathOutcome``.

    The function comes from ``agent.actions`` at call time, so the agent starts (and serves its
    orders) whatever that module's state; a missing function fails that task with the reason.
    """
    for name, function in DATA_TASKS.items():
        runtime.app.task(name=name, bind=True, ignore_result=True)(_data_task(runtime, name, function))


def _data_task(runtime: Runtime, name: str, function: str) -> Any:
    def data_task(self: Any, paths: Any = None, jobid: object = None, **options: Any) -> Any:
        task_id = str(self.request.id)
        apply_stored_settings(runtime.ctx)
        report(runtime.ctx, TaskResult(task_id=task_id, state="STARTED", at=now_iso()))
        try:
            if not isinstance(paths, list):
                raise ValueError("paths must be a list of {path, ...} items")
            func = getattr(importlib.import_module(ACTIONS_MODULE), function)
            ctx = runtime.action_context(task_id=task_id, jobid=jobid)
            outcomes = func(ctx, paths, jobid=jobid, **options)
        except Exception as exc:  # noqa: BLE001 - the batch as a whole failed: report it
            logger.exception("%s[%s] job=%s failed", name, task_id, jobid)
            report(runtime.ctx, TaskResult(task_id=task_id, state="FAILURE", error=f"{type(exc).__name__}: {exc}",
                                           at=now_iso()))
            return None
        summary = Counter(str(item.get("status")) for item in outcomes)
        report(runtime.ctx, TaskResult(task_id=task_id, state="SUCCESS", at=now_iso(), results={
            "jobid": jobid, "outcomes": list(outcomes), "summary": dict(summary),
        }))
        return outcomes

    data_task.__name__ = data_task.__qualname__ = name.replace(".", "_")
    return data_task
