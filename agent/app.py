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
demo; production sites use Redis or RabbitMQ. The agent publishes through
``AtomicFilesystemTransport``: kombu's own creates the message file, then serialises and writes
it, and a reader polling meanwhile takes the empty or partial file (a JSONDecodeError, and the
message lost) - likely with the large reports of data tasks. On RabbitMQ, raise the server's
``consumer_timeout`` (30 min by default) above the longest task for the same reason as Redis's
visibility timeout.

Tasks: the orders of ``agent.orders`` (named ``AgentTask.*``), the data tasks (``HsmTask.*``),
whose work is the pure functions of ``agent.actions`` and ``agent.discovery`` (imported on first
use), and the control order ``agent.cancel``. Orders report to ``HubTask.TASK_RESULT``, data
tasks to ``HubTask.JOB_TASK_RESULT`` with the node's name: ``STARTED``, ``PROGRESS`` (data tasks,
at most every ``PROGRESS_INTERVAL`` seconds), then ``SUCCESS`` with the results or ``FAILURE``
with the error. ``agent.cancel`` is not answered. Every process serves every task; the queue a
message was sent to decides which worker runs it (cancels: the node's control queue, served by
a worker of its own, see ``agent.worker``).

A data task drops the options its function does not accept (workflow-only fields such as
``lock_level`` travel with every step of a chain) and logs them once per process, so a workflow
option never fails a batch. A task whose id or job id has a cancel flag when it starts answers
every path ``aborted`` ("not attempted: cancelled") at once, opening no target and touching no
file.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from celery import Celery

from agent.config import AgentConfig
from agent.contract import (
    DEFAULT_QUEUE,
    AgentTask,
    HsmTask,
    HubTask,
    PathOutcome,
    TaskResult,
    TaskState,
    broker_queue,
)
from agent.orders import ORDERS, OrderContext, apply_cancel, apply_stored_settings, now_iso, run_order
from agent.state import StateDir
from agent.transport import AtomicFilesystemTransport

logger = logging.getLogger(__name__)

BROKER_SUBDIRS = ("queue", "processed", "control")
ACTIONS_MODULE = "agent.actions"
DISCOVERY_MODULE = "agent.discovery"
# HsmTask name -> (module, function) doing its work (``list`` is exported under the contract's name).
DATA_TASKS: dict[str, tuple[str, str]] = {
    HsmTask.MIGRATE: (ACTIONS_MODULE, "migrate"),
    HsmTask.RECALL: (ACTIONS_MODULE, "recall"),
    HsmTask.REVERSE_STUB: (ACTIONS_MODULE, "reverse_stub"),
    HsmTask.DELETE: (ACTIONS_MODULE, "delete"),
    HsmTask.MOVE: (ACTIONS_MODULE, "move"),
    HsmTask.STAT: (ACTIONS_MODULE, "stat"),
    HsmTask.LIST: (ACTIONS_MODULE, "list"),
    HsmTask.RECURSIVE_NAVIGATE: (DISCOVERY_MODULE, "recursive_navigate"),
}
PROGRESS_INTERVAL = 30.0
FILESYSTEM_POLLING = 0.25
CANCELLED_MESSAGE = "not attempted: cancelled"  # the actions' wording for a path a cancel stopped


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
        "broker_transport": AtomicFilesystemTransport if config.uses_filesystem_broker else None,
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
        register_control_tasks(self)

    @functools.cached_property
    def filesystem_kind(self) -> str:
        """``posix`` or ``gpfs``: this node's filesystem driver (``agent.filesystems``), decided
        once per process."""
        filesystems = importlib.import_module("agent.filesystems")
        kind = str(filesystems.configured_kind(self.config))
        logger.info("filesystem driver: %s (filesystem = %s)", kind, self.config.filesystem)
        return kind

    def send(self, name: str, kwargs: dict[str, Any]) -> None:
        """Publish a report (a ``HubTask``) to the hub's queue."""
        self.app.send_task(name, kwargs=kwargs, queue=self.config.hub_queue)

    def report_data(self, task_id: str, state: TaskState, **fields: Any) -> None:
        """Publish a data task's ``TaskResult`` to ``HubTask.JOB_TASK_RESULT``, naming this node."""
        result = TaskResult(task_id=task_id, state=state, at=now_iso(), node=self.config.node)
        result.update(fields)  # type: ignore[typeddict-item]
        self.send(HubTask.JOB_TASK_RESULT, {"report": dict(result)})

    def action_context(self, *, task_id: str, jobid: object,
                       on_progress: Callable[[Any], None] | None = None) -> Any:
        """The ``agent.actions.ActionContext`` of one data task: the configured roots, targets
        opened from the state directory, a cancel check on the state directory's flags, and a
        progress callback that logs and hands the ``BatchProgress`` to ``on_progress``."""
        actions = importlib.import_module(ACTIONS_MODULE)
        if not self.config.roots:
            raise ValueError("this agent has no roots configured (roots / AGENT_ROOTS): it may touch no file")
        ids = cancel_ids(task_id, jobid)
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
            if on_progress is not None:
                on_progress(done)

        roots = [str(root) for root in self.config.roots]
        filesystem = None  # the POSIX driver, built by the context
        if self.filesystem_kind != "posix":
            filesystem = importlib.import_module("agent.filesystems").open_filesystem(
                self.filesystem_kind, roots, bin_dir=self.config.gpfs_bin_dir)
        return actions.ActionContext(roots=roots, open_target=self.state.open_target, should_cancel=should_cancel,
                                     progress=progress, progress_interval=PROGRESS_INTERVAL,
                                     lane_workers=self.config.small_file_workers,
                                     lane_native=self.config.small_file_native, filesystem=filesystem)


def register_order_tasks(runtime: Runtime) -> None:
    """One Celery task per order name, each a thin call of ``agent.orders.run_order``."""
    for name in ORDERS:
        runtime.app.task(name=name, bind=True, ignore_result=True, shared=False)(_order_task(runtime, name))


def _order_task(runtime: Runtime, name: str) -> Any:
    def order_task(self: Any, order: Any = None, **extra: Any) -> None:
        if extra:
            logger.warning("%s[%s]: unexpected arguments %s ignored", name, self.request.id, sorted(extra))
        apply_stored_settings(runtime.ctx)
        run_order(runtime.ctx, name, order, task_id=str(self.request.id))

    order_task.__name__ = order_task.__qualname__ = name.replace(".", "_")
    return order_task


def cancel_ids(task_id: str, jobid: object) -> list[str]:
    """The ids whose cancel flag stops a data task: its own, and its job's."""
    return [task_id] + ([str(jobid)] if jobid not in (None, "") else [])


def register_data_tasks(runtime: Runtime) -> None:
    """One Celery task per ``HsmTask``: ``task(paths, jobid, **options)`` -> list of ``PathOutcome``.

    The function comes from its module at call time, so the agent starts (and serves its
    orders) whatever that module's state; a missing function fails that task with the reason.
    """
    for name, (module, function) in DATA_TASKS.items():
        task = _data_task(runtime, name, module, function)
        runtime.app.task(name=name, bind=True, ignore_result=True, shared=False)(task)


def register_control_tasks(runtime: Runtime) -> None:
    """``agent.cancel``: raise the cancel flags of the given ids (``agent.orders.apply_cancel``).

    Served by every process like any task, but sent to the node's control queue, whose worker is
    never busy with data (``agent.worker``). Not answered: the cancelled tasks report.
    """

    def cancel_task(self: Any, order: Any = None, **extra: Any) -> None:
        if extra:
            logger.warning("%s[%s]: unexpected arguments %s ignored", AgentTask.CANCEL, self.request.id,
                           sorted(extra))
        apply_cancel(runtime.ctx, order, task_id=str(self.request.id))

    cancel_task.__name__ = cancel_task.__qualname__ = AgentTask.CANCEL.replace(".", "_")
    runtime.app.task(name=AgentTask.CANCEL, bind=True, ignore_result=True, shared=False)(cancel_task)


_SIGNATURES: dict[Callable[..., Any], frozenset[str] | None] = {}
_IGNORED_LOGGED: set[tuple[str, frozenset[str]]] = set()
_IGNORED_LOCK = threading.Lock()


def accepted_options(func: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword options ``func(ctx, paths, **options)`` accepts (None: any, it takes ``**kwargs``)."""
    if func not in _SIGNATURES:
        params = list(inspect.signature(func).parameters.values())[2:]  # past ctx and paths
        if any(param.kind is inspect.Parameter.VAR_KEYWORD for param in params):
            _SIGNATURES[func] = None
        else:
            _SIGNATURES[func] = frozenset(param.name for param in params if param.kind in (
                inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
    return _SIGNATURES[func]


def usable_options(name: str, func: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without those ``func`` does not accept, which are logged once per process.

    Workflows pass their fields (``lock_level``...) to every step, and a step's function knows
    only its own options: an unknown one must not fail the batch with a TypeError.
    """
    accepted = accepted_options(func)
    if accepted is None:
        return dict(options)
    ignored = frozenset(options) - accepted
    if ignored:
        with _IGNORED_LOCK:
            first = (name, ignored) not in _IGNORED_LOGGED
            _IGNORED_LOGGED.add((name, ignored))
        if first:
            logger.info("%s: option(s) %s not used by this task, ignored", name, ", ".join(sorted(ignored)))
    return {key: value for key, value in options.items() if key in accepted}


def _not_attempted(paths: list[Any]) -> list[PathOutcome]:
    """Every path ``aborted`` without looking at it: the task was cancelled before it started."""
    shown = [item.get("path") if isinstance(item, Mapping) else None for item in paths]
    return [PathOutcome(path=path if isinstance(path, str) else "", status="aborted", message=CANCELLED_MESSAGE)
            for path in shown]


def _data_task(runtime: Runtime, name: str, module: str, function: str) -> Any:
    def data_task(self: Any, paths: Any = None, jobid: object = None, **options: Any) -> Any:
        task_id = str(self.request.id)
        apply_stored_settings(runtime.ctx)
        runtime.report_data(task_id, "STARTED")
        ids = cancel_ids(task_id, jobid)
        started = time.monotonic()
        sent = {"at": started}

        def send_progress(done: Any) -> None:
            # The batch calls this at most every PROGRESS_INTERVAL and once at the end; the hub
            # hears of long batches only (the final count comes with SUCCESS anyway).
            now = time.monotonic()
            if now - sent["at"] < PROGRESS_INTERVAL or done.paths_done >= done.paths_total:
                return
            sent["at"] = now
            runtime.report_data(task_id, "PROGRESS", results={
                "paths_done": done.paths_done, "paths_total": done.paths_total,
                "bytes_done": done.bytes_done, "bytes_total": done.bytes_total})

        try:
            if not isinstance(paths, list):
                raise ValueError("paths must be a list of {path, ...} items")
            if runtime.state.cancel_requested(ids):
                logger.info("%s[%s] job=%s cancelled before it started: %d path(s) not attempted", name, task_id,
                            jobid, len(paths))
                outcomes = _not_attempted(paths)
            else:
                func = getattr(importlib.import_module(module), function)
                kwargs = usable_options(name, func, options)
                ctx = runtime.action_context(task_id=task_id, jobid=jobid, on_progress=send_progress)
                outcomes = func(ctx, paths, jobid=jobid, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the batch as a whole failed: report it
            logger.exception("%s[%s] job=%s failed", name, task_id, jobid)
            runtime.report_data(task_id, "FAILURE", error=f"{type(exc).__name__}: {exc}")
            return None
        summary = Counter(str(item.get("status")) for item in outcomes)
        runtime.report_data(task_id, "SUCCESS", results={
            "jobid": jobid, "outcomes": list(outcomes), "summary": dict(summary),
            "cancelled": runtime.state.cancel_requested(ids),
        })
        return outcomes

    data_task.__name__ = data_task.__qualname__ = name.replace(".", "_")
    return data_task
