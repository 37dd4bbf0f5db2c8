from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """What happens to data: workflows, jobs, tasks, policies, schedules (arrives with the engine)."""

    name = "workflows"
    default_auto_field = "django.db.models.BigAutoField"
