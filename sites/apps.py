from django.apps import AppConfig


class SitesConfig(AppConfig):
    """Where data lives: sites, nodes, queues, spaces, buckets, targets."""

    name = "sites"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Modules that register ``site_tasks.on_finish`` hooks: a hub worker applying an agent's
        # result must run them even though it never imports the API views.
        import sites.services.spaces  # noqa: F401
        import sites.services.targets  # noqa: F401
