from django.apps import AppConfig


class SitesConfig(AppConfig):
    """Where data lives: sites, nodes, queues, spaces, buckets, targets."""

    name = "sites"
    default_auto_field = "django.db.models.BigAutoField"
