"""Create the demo estate if it is missing (used by ``make run``; see ``sites.services.demo``).

Idempotent: a second run makes nothing. Does nothing when the estate has a site other than
``demo`` (a real estate), nor with ``HUB_DEMO=0``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Ensure the demo site, space and folder target exist (unless a real estate exists or HUB_DEMO=0)."

    def handle(self, *args, **options) -> None:
        from sites.services.demo import ensure_demo_estate

        if not settings.HUB_DEMO:
            self.stdout.write("Demo: off (HUB_DEMO=0); nothing made.")
            return
        report = ensure_demo_estate(None, var_dir=settings.VAR_DIR)
        if report.refused:
            self.stdout.write(f"Demo: not made, {report.refused}.")
            return
        for line in report.made:
            self.stdout.write(f"Demo: created {line}")
        if report.kept and not report.made:
            self.stdout.write(f"Demo: already in place ({'; '.join(report.kept)}).")
        elif report.kept:
            self.stdout.write(f"Demo: kept {'; '.join(report.kept)}")
