"""Run the hub in the foreground: the web server, the hub worker and the demo site's agent.

The hub worker consumes the ``hub`` queue: agents' heartbeats, inventory reports and task
results arrive there and are applied to the database (the agent never touches it).

The agent (``python -m agent run --site demo``) starts when the demo site exists (``manage.py
ensure_demo``) and ``HUB_DEMO`` is not 0. It shares the hub's broker (the filesystem broker
under ``HUB_VAR_DIR`` by default) and gets the site's agent key in its environment, read here
from the database and never printed.

Every child is started in its own process group and stopped (SIGTERM, then SIGKILL after a
grace period) when this command gets Ctrl-C or SIGTERM, or when any child exits, so nothing is
left running behind ``make run``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

GRACE_SECONDS = 15


@dataclass(frozen=True)
class Child:
    """A process to start: its command line and, when not the inherited one, its environment."""

    command: list[str]
    env: dict[str, str] | None = None


class Command(BaseCommand):
    help = "Start the hub's processes in the foreground until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("HUB_PORT", "8000")))
        parser.add_argument("--bind", default=os.environ.get("HUB_BIND", "127.0.0.1"))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("HUB_WEB_WORKERS", "2")))
        parser.add_argument("--worker-concurrency", type=int,
                            default=int(os.environ.get("HUB_WORKER_CONCURRENCY", "2")))

    def commands(self, options) -> dict[str, Child]:
        python = sys.executable
        children = {
            "web": Child([
                python, "-m", "gunicorn", "hub.wsgi:application",
                "--bind", f"{options['bind']}:{options['port']}",
                "--workers", str(options["workers"]),
                "--access-logfile", "-", "--graceful-timeout", str(GRACE_SECONDS),
            ]),
            "worker": Child([
                python, "-m", "celery", "-A", "hub", "worker", "-Q", "hub",
                "--concurrency", str(options["worker_concurrency"]), "--hostname", "hub@%h",
                "--without-mingle", "--without-gossip", "--loglevel", "INFO",
            ]),
            # Periodic work (the workflow sweeper) from the schedule in the database.
            "beat": Child([python, "-m", "celery", "-A", "hub", "beat", "--loglevel", "INFO"]),
        }
        agent = self.demo_agent()
        if agent is not None:
            children["agent"] = agent
        return children

    def demo_agent(self) -> Child | None:
        """The demo site's agent, or None (no demo site, or ``HUB_DEMO=0``)."""
        from sites.services.demo import DEMO_SITE, DemoPaths, demo_site

        if not settings.HUB_DEMO:
            return None
        site = demo_site()
        if site is None:
            return None
        root = DemoPaths.under(settings.VAR_DIR).data
        root.mkdir(parents=True, exist_ok=True)  # the agent refuses a missing root
        env = {
            **os.environ,
            # The same state folder, hence the same filesystem broker, as the hub's processes.
            "HUB_VAR_DIR": str(settings.VAR_DIR),
            "AGENT_BROKER_URL": settings.CELERY_BROKER_URL,
            # In the environment, not on the command line, where every user could read it.
            "AGENT_KEY": site.agent_key,
        }
        timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
        if timeout:
            env["AGENT_VISIBILITY_TIMEOUT"] = str(timeout)
        return Child([sys.executable, "-m", "agent", "run", "--site", DEMO_SITE, "--root", str(root)], env)

    def handle(self, *args, **options) -> None:
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        spec = self.commands(options)
        connection.close()  # this process needs the database no more
        try:
            for name, child in spec.items():
                children[name] = subprocess.Popen(child.command, cwd=settings.BASE_DIR, env=child.env,
                                                  start_new_session=True)
                self.stdout.write(f"started {name} (pid {children[name].pid})")
            self.stdout.write(
                f"Hub at http://{options['bind']}:{options['port']}/api/  (docs: /api/docs/). Ctrl-C stops it."
            )
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with {child.returncode}; stopping the hub")
                        stopping = True
                time.sleep(0.5)
        finally:
            self._stop_all(children)

    def _stop_all(self, children: dict[str, subprocess.Popen]) -> None:
        for child in children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            self.stdout.write(f"stopped {name}")
