from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _after_migrate(sender, **kwargs) -> None:
    """Keep built-in groups' grants and the feature rows in step with the installed models.

    Runs after every ``migrate``, so permissions of models added by later releases are granted
    to Administrators without a hand-written migration for each.
    """
    from django.apps import apps

    # post_migrate is sent once per app; the last app's signal comes after every app's
    # permissions were created, so do the work once, then.
    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if sender.name != with_models[-1].name:
        return
    from hub.features import sync_features
    from hub.services.accounts import sync_builtin_group_permissions

    sync_builtin_group_permissions()
    sync_features()


class HubConfig(AppConfig):
    """The platform layer: accounts, auth, permissions, configuration, audit."""

    name = "hub"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import hub.authentication  # noqa: F401  (registers the OpenAPI scheme of client keys)

        # After the last app's migrations, so every model's permissions exist.
        post_migrate.connect(_after_migrate, dispatch_uid="hub.after_migrate")
