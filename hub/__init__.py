"""The hub: Django project package and platform layer."""

from hub.celery import app as celery_app

__all__ = ["celery_app"]
