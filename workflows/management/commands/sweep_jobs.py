"""``manage.py sweep_jobs``: one pass of the workflow sweeper now (beat runs it periodically)."""

from __future__ import annotations

from dataclasses import asdict

from django.core.management.base import BaseCommand

from workflows.sweeper import sweep


class Command(BaseCommand):
    help = "Fail stuck tasks, re-queue the paths of lost nodes, finish cancels, retry waiting dispatch, purge old jobs."

    def handle(self, *args, **options) -> None:
        done = sweep()
        self.stdout.write(", ".join(f"{name} {count}" for name, count in asdict(done).items()))
