"""Run the hub in the foreground: the web server and the hub worker (the demo agent joins later).

The hub worker consumes the ``hub`` queue: agents' heartbeats, inventory reports and task
results arrive there and are applied to the database (the agent never touches it).

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

from django.conf import settings
from django.core.management.base import BaseCommand

GRACE_SECONDS = 15


class Command(BaseCommand):
    help = "Start the hub's processes in the foreground until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("HUB_PORT", "8000")))
        parser.add_argument("--bind", default=os.environ.get("HUB_BIND", "127.0.0.1"))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("HUB_WEB_WORKERS", "2")))
        parser.add_argument("--worker-concurrency", type=int,
                            default=int(os.environ.get("HUB_WORKER_CONCURRENCY", "2")))

    def commands(self, options) -> dict[str, list[str]]:
        python = sys.executable
        return {
            "web": [
                python, "-m", "gunicorn", "hub.wsgi:application",
                "--bind", f"{options['bind']}:{options['port']}",
                "--workers", str(options["workers"]),
                "--access-logfile", "-", "--graceful-timeout", str(GRACE_SECONDS),
            ],
            "worker": [
                python, "-m", "celery", "-A", "hub", "worker", "-Q", "hub",
                "--concurrency", str(options["worker_concurrency"]), "--hostname", "hub@%h",
                "--without-mingle", "--without-gossip", "--loglevel", "INFO",
            ],
        }

    def handle(self, *args, **options) -> None:
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            for name, command in self.commands(options).items():
                children[name] = subprocess.Popen(command, cwd=settings.BASE_DIR, start_new_session=True)
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
