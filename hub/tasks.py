"""Hub-side Celery tasks (the hub worker runs these; agents run their own)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="hub.ping")
def ping() -> str:
    """Round-trip check used by health checks and tests of the broker wiring."""
    return "pong"
