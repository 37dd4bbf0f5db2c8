"""Running the agent: one supervisor process, one Celery worker process per queue, and one
control worker.

Why one worker per queue rather than one worker consuming them all: a Celery worker has one
pool with one concurrency, and the issue asks for concurrency per queue (say 2 for orders and
discovery on ``default``, 4 for data movement on ``transfer``). One worker per queue also keeps a
queue's long data tasks from occupying the slots another queue's orders need.

The supervisor (``run``), which is the process systemd starts:

1. sets up logging, the state directory (pruning old journal entries) and the broker folders;
2. starts one worker process per configured queue (``multiprocessing`` *spawn*, so each starts
   from a clean interpreter rather than a fork of a threaded process), and the node's *control
   worker* (below);
3. sends a heartbeat at once and then every interval, and an inventory report once at start;
4. watches the workers: if one exits on its own, it stops the others and exits 1, so systemd
   (``Restart=on-failure``) restarts the whole agent and heartbeats never claim a queue that
   nobody consumes;
5. on SIGTERM or SIGINT, sends SIGTERM to each worker - a Celery *warm* shutdown: stop taking
   messages, finish the running tasks - waits for them and exits 0. A second SIGTERM/SIGINT
   while they drain sends SIGQUIT (a *cold* shutdown: running tasks are abandoned, to be
   delivered again).
   systemd's ``TimeoutStopSec`` bounds how long a batch may take to finish (``KillMode=mixed``:
   only the supervisor gets systemd's SIGTERM; the pool processes must not, or running tasks
   would die instead of finishing).

The control worker consumes the node's own queue, ``agent.contract.control_queue(site, node)``
(``<site>.control.<node>``), with one solo slot. It serves ``agent.cancel``, which raises cancel
flags in the state directory that running data tasks check between files. A cancel cannot wait
in a data queue: it is needed precisely when every data slot is busy with the tasks it cancels,
so it gets a queue and a process that never run data. It needs no configuration (the queue's name
comes from the site and node names; the hub sends the order once per node of the site, by the
node names of the heartbeats) and is not a queue of the heartbeat's ``queues`` list (the hub
dispatches no work there); its pid is ``info.control_worker``. Like a queue worker, if it dies
the agent stops with exit code 1.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from agent.config import AgentConfig, level_number

logger = logging.getLogger("agent")

VERSION = "0.1.0"
POLL_SECONDS = 0.5
PR_SET_PDEATHSIG = 1


# --- logging -------------------------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process role, message (and exception)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": self.role,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(config: AgentConfig, role: str) -> None:
    """Log to stderr (journald collects it under systemd) in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{role}] %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number(config.log_level))
    logging.captureWarnings(True)  # library warnings in the same format (one JSON object a line)


# --- one queue's worker (a child process) -------------------------------------------------------

CONTROL = "control"  # the control worker's role in logs and process names (not a queue name)


def worker_hostname(config: AgentConfig, queue: str) -> str:
    """The Celery node name of a queue's worker: unique per site, queue and node."""
    return f"{config.site}.{queue}@{config.node}"


def control_hostname(config: AgentConfig) -> str:
    """The Celery node name of the control worker. A queue cannot be named like it: queue names
    have no dots."""
    return f"{config.site}.{CONTROL}.worker@{config.node}"


def _detach_from_supervisor_group() -> None:
    """Put this worker (and its pool processes) in a process group of its own, dying with the
    supervisor.

    A signal for the whole group (Ctrl-C in a terminal, ``kill -TERM -<pgid>``) then reaches the
    supervisor alone, which asks each worker for a warm shutdown. Were the pool processes to get
    it too, they would die mid-task (Celery resets their SIGTERM handler) and the worker could
    hang waiting for them. ``PR_SET_PDEATHSIG`` makes the kernel send SIGTERM to the worker if
    the supervisor dies without stopping it (SIGKILL, a crash): no orphan keeps consuming a
    queue that no heartbeat announces.
    """
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the group is still ours
        return
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def queue_worker_main(config: AgentConfig, queue: str) -> None:
    """Entry point of a worker process: a Celery worker consuming one of the site's queues."""
    spec = next(spec for spec in config.queues if spec.name == queue)
    _serve(config, role=queue, broker_queue=spec.broker_name(config.site), hostname=worker_hostname(config, queue),
           concurrency=spec.concurrency, pool=config.pool)


def control_worker_main(config: AgentConfig) -> None:
    """Entry point of the control worker: one solo slot on the node's control queue (see the
    module docstring). Solo: a cancel is a few small file writes, not worth a pool process."""
    _serve(config, role=CONTROL, broker_queue=config.control_queue,
           hostname=control_hostname(config), concurrency=1, pool="solo")


def _serve(config: AgentConfig, *, role: str, broker_queue: str, hostname: str, concurrency: int,
           pool: str) -> None:
    from celery import signals
    from celery.concurrency import get_implementation

    from agent.app import Runtime
    from agent.orders import apply_stored_settings

    _detach_from_supervisor_group()
    setup_logging(config, role)

    @signals.setup_logging.connect(weak=False)
    def keep_our_logging(**_: Any) -> None:  # a receiver stops Celery from configuring logging itself
        return None

    runtime = Runtime(config)
    # Pool processes apply pushed settings before each task; this process (which logs receipts)
    # when a task arrives.
    signals.task_received.connect(lambda **_: apply_stored_settings(runtime.ctx), weak=False)
    runtime.app.conf.worker_concurrency = concurrency
    runtime.app.conf.worker_pool = pool
    worker = runtime.app.Worker(
        hostname=hostname,
        queues=[broker_queue],
        concurrency=concurrency,
        pool_cls=get_implementation(pool),
        loglevel=config.log_level,
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
        optimization="fair",
        quiet=True,
    )
    logger.info("worker for %s (%s, %s x%d) starting", role if role == CONTROL else f"queue {role}", broker_queue,
                pool, concurrency)
    worker.start()
    sys.exit(worker.exitcode or 0)


# --- the supervisor --------------------------------------------------------------------------------

class Supervisor:
    """Starts the queue workers, the heartbeat and the start-up inventory; stops them on a signal."""

    def __init__(self, config: AgentConfig) -> None:
        from agent.app import Runtime, prepare_broker_dir
        from agent.heartbeat import HeartbeatLoop
        from agent.orders import apply_stored_settings, effective_settings

        self.config = config
        prepare_broker_dir(config)
        self.runtime = Runtime(config)
        self.runtime.state.ensure()
        pruned = self.runtime.state.prune()
        if pruned:
            logger.info("forgot %d old journal entries", pruned)
        ctx = self.runtime.ctx
        apply_stored_settings(ctx)
        self.started_at = datetime.now(UTC).isoformat()
        self.heartbeat = HeartbeatLoop(
            self.runtime.send, site=config.site, node=config.node, queues=config.queue_names(),
            interval=lambda: float(effective_settings(ctx)["agent:heartbeat_interval"]),
            info=self._info, on_beat=lambda: apply_stored_settings(ctx),
        )
        self.workers: dict[str, multiprocessing.process.BaseProcess] = {}
        self.control: multiprocessing.process.BaseProcess | None = None
        self._stop = threading.Event()
        self.signal_name: str | None = None

    def _info(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "pool": self.config.pool,
            "concurrency": {spec.name: spec.concurrency for spec in self.config.queues},
            "workers": {name: proc.pid for name, proc in self.workers.items()},
            "control_worker": self.control.pid if self.control is not None else None,
            "roots": [str(root) for root in self.config.roots],
        }

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._stop.is_set():
            # A second request while the workers drain: stop now (Celery's cold shutdown). The
            # running tasks die unacknowledged and are delivered again later (all idempotent).
            self._signal_workers(signal.SIGQUIT)
            return
        self.signal_name = signal.Signals(signum).name
        self._stop.set()

    def _send_inventory(self) -> None:
        from agent.orders import send_inventory

        try:
            report = send_inventory(self.runtime.ctx)
            logger.info("inventory sent: %d filesystem(s), %d pool(s)%s", len(report["filesystems"]),
                        len(report["pools"]), "" if "counts" in report else ", counts omitted")
        except Exception:  # noqa: BLE001 - the refresh order (POST /sites/{id}/refresh/) can retry it
            logger.exception("start-up inventory not sent")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        spawn = multiprocessing.get_context("spawn")
        for spec in self.config.queues:
            proc = spawn.Process(target=queue_worker_main, args=(self.config, spec.name),
                                 name=f"agent-{self.config.site}-{spec.name}", daemon=False)
            proc.start()
            self.workers[spec.name] = proc
        self.control = spawn.Process(target=control_worker_main, args=(self.config,),
                                     name=f"agent-{self.config.site}-{CONTROL}", daemon=False)
        self.control.start()
        logger.info("agent of site %s on node %s: queues %s, state in %s", self.config.site, self.config.node,
                    ", ".join(f"{s.name} x{s.concurrency}" for s in self.config.queues), self.config.state_dir)
        self.heartbeat.start()
        threading.Thread(target=self._send_inventory, name="agent-inventory", daemon=True).start()

        exit_code = 0
        while not self._stop.wait(POLL_SECONDS):
            dead = [name for name, proc in self.workers.items() if not proc.is_alive()]
            if dead:
                logger.error("worker(s) for queue(s) %s exited (code %s); stopping the agent", ", ".join(dead),
                             ", ".join(str(self.workers[name].exitcode) for name in dead))
                exit_code = 1
                break
            if self.control is not None and not self.control.is_alive():
                # Cancels would no longer reach this node's running tasks.
                logger.error("the control worker exited (code %s); stopping the agent", self.control.exitcode)
                exit_code = 1
                break
        if self.signal_name:
            logger.info("%s received: finishing running tasks, then stopping", self.signal_name)
        self._stop_workers()
        self.heartbeat.stop()
        logger.info("agent stopped")
        return exit_code

    def _processes(self) -> dict[str, multiprocessing.process.BaseProcess]:
        """Every worker process by role (the queue workers' roles are their queue names)."""
        procs = {f"queue {name}": proc for name, proc in self.workers.items()}
        if self.control is not None:
            procs[CONTROL] = self.control
        return procs

    def _signal_workers(self, signum: int) -> None:
        for proc in self._processes().values():
            if proc.is_alive() and proc.pid is not None:
                try:
                    os.kill(proc.pid, signum)
                except ProcessLookupError:
                    pass

    def _stop_workers(self) -> None:
        self._signal_workers(signal.SIGTERM)  # Celery's warm shutdown: finish the running tasks
        waited = time.monotonic()
        for name, proc in self._processes().items():
            while proc.is_alive():
                proc.join(10.0)
                if proc.is_alive():
                    logger.info("waiting for the %s worker to finish its tasks (%.0fs)", name,
                                time.monotonic() - waited)


def run(config: AgentConfig) -> int:
    """``python -m agent run``: supervise the agent until a signal; the process exit code."""
    setup_logging(config, "agent")
    return Supervisor(config).run()
