"""An in-process broker between the hub and real agent runtimes, for engine tests.

Everything but the transport is real: the hub's services publish with ``hub.celery.app.send_task``
(replaced here by a recorder), each ``InlineAgent`` runs the agent's own Celery tasks
(``agent.app.Runtime``) eagerly on real folders, and the agents' reports are applied by the hub's
own report tasks. ``pump()`` moves messages both ways until nothing is left, so a test can stop
between any two messages (to pause, cancel or kill a node) by pumping a bounded number.

The real-process version of this (Redis, a hub worker, two agent daemons, moto) is
``tests/integration/test_workflow_e2e.py``.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.utils import timezone

from agent.app import Runtime
from agent.config import load_config
from sites.models import DEFAULT_QUEUE, Node, Queue, Site


@dataclass
class Message:
    name: str
    kwargs: dict[str, Any]
    queue: str
    task_id: str | None


@dataclass
class InlineAgent:
    """One agent node of a site, run in this process."""

    site: Site
    node: str
    root: Path
    runtime: Runtime
    queues: tuple[str, ...]
    alive: bool = True

    def serves(self, queue: str) -> bool:
        return queue in self.queues


@dataclass
class InlineBroker:
    hub_messages: deque[Message] = field(default_factory=deque)  # hub -> agents
    reports: deque[Message] = field(default_factory=deque)  # agents -> hub
    agents: list[InlineAgent] = field(default_factory=list)
    delivered: list[Message] = field(default_factory=list)
    undeliverable: list[Message] = field(default_factory=list)

    # --- the hub's side ------------------------------------------------------------------------
    def send_task(self, name: str, args: Any = None, kwargs: dict[str, Any] | None = None, queue: str | None = None,
                  task_id: str | None = None, **_: Any) -> None:
        message = Message(name, dict(kwargs or {}), queue or "hub", task_id)
        if message.queue == "hub":
            self.reports.append(message)
        else:
            self.hub_messages.append(message)

    # --- agents --------------------------------------------------------------------------------
    def add_agent(self, site: Site, root: Path, state_dir: Path, *, node: str = "node1",
                  queues: tuple[str, ...] = (DEFAULT_QUEUE,)) -> InlineAgent:
        root.mkdir(parents=True, exist_ok=True)
        environ = {"AGENT_SITE": site.name, "AGENT_NODE": node, "AGENT_STATE_DIR": str(state_dir),
                   "AGENT_ROOTS": str(root), "AGENT_KEY": site.agent_key, "AGENT_INVENTORY_BUDGET": "5",
                   "AGENT_BROKER_URL": "filesystem://", "AGENT_BROKER_DIR": str(state_dir.parent / f"broker-{node}")}
        config = load_config(environ=environ)
        runtime = Runtime(config)
        runtime.send = self._agent_report  # type: ignore[method-assign]
        runtime.ctx.send = self._agent_report
        broker_names = tuple(site.name if q == DEFAULT_QUEUE else f"{site.name}.{q}" for q in queues)
        from agent.contract import control_queue

        agent = InlineAgent(site=site, node=node, root=root, runtime=runtime,
                            queues=(*broker_names, control_queue(site.name, node)))
        self.agents.append(agent)
        self.beat(agent, queues=queues)
        return agent

    def beat(self, agent: InlineAgent, *, queues: tuple[str, ...] = (DEFAULT_QUEUE,), age: float = 0.0) -> None:
        """Record a heartbeat of ``agent`` (``age`` seconds old) the way the hub would."""
        node, _ = Node.objects.get_or_create(site=agent.site, name=agent.node)
        node.last_heartbeat = timezone.now() - timedelta(seconds=age)
        node.save(update_fields=["last_heartbeat"])
        for name in queues:
            queue, _ = Queue.objects.get_or_create(site=agent.site, name=name)
            node.queues.add(queue)

    def kill(self, agent: InlineAgent) -> None:
        """The node stops: it takes no message and its heartbeat goes stale."""
        agent.alive = False
        self.beat(agent, age=10_000)

    def _agent_report(self, name: str, kwargs: dict[str, Any]) -> None:
        self.reports.append(Message(name, dict(kwargs), "hub", None))

    # --- moving messages -------------------------------------------------------------------------
    def deliver_one_to_agent(self) -> Message | None:
        if not self.hub_messages:
            return None
        message = self.hub_messages.popleft()
        agent = next((a for a in self.agents if a.alive and a.serves(message.queue)), None)
        if agent is None:
            self.undeliverable.append(message)
            return message
        task = agent.runtime.app.tasks[message.name]
        task.apply(kwargs=message.kwargs, task_id=message.task_id)
        self.delivered.append(message)
        return message

    def deliver_reports(self) -> int:
        import sites.tasks
        import workflows.tasks
        from agent.contract import HubTask

        handlers = {HubTask.TASK_RESULT: sites.tasks.task_result, HubTask.JOB_TASK_RESULT: workflows.tasks.task_result,
                    HubTask.HEARTBEAT: sites.tasks.heartbeat, HubTask.INVENTORY: sites.tasks.inventory_report}
        count = 0
        while self.reports:
            message = self.reports.popleft()
            handlers[message.name](**message.kwargs)
            count += 1
        return count

    def pump(self, *, limit: int = 10_000) -> int:
        """Deliver messages both ways until none is left (or ``limit`` agent messages went)."""
        sent = 0
        self.deliver_reports()
        while self.hub_messages and sent < limit:
            self.deliver_one_to_agent()
            sent += 1
            self.deliver_reports()
        return sent

    def requeue_undeliverable(self) -> None:
        self.hub_messages.extend(self.undeliverable)
        self.undeliverable.clear()


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512
