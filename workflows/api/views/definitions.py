"""``/workflows/``: workflow definitions (list, create, get, patch, delete).

Reading needs ``view`` on the workflow: every member of the built-in Users group has it for all
workflows (``hub.services.accounts``), so anyone who may launch sees what they may launch.
Writing needs the model permissions Administrators hold (or an object grant, as for every hub
resource). A built-in keeps its name and cannot be deleted (409); deleting any other workflow
keeps its jobs, which hold their own copy of the definition and the workflow's name.
"""

from __future__ import annotations

from django.db import transaction

from hub import permissions
from hub.api.exceptions import Conflict
from hub.api.viewsets import HubModelViewSet
from workflows.api.serializers.definitions import WorkflowSerializer
from workflows.filtersets import WorkflowFilterSet
from workflows.models import Workflow


class WorkflowViewSet(HubModelViewSet):
    """API endpoint for viewing workflows."""

    queryset = Workflow.objects.order_by("name")
    serializer_class = WorkflowSerializer
    filterset_class = WorkflowFilterSet

    @transaction.atomic
    def destroy_instance(self, instance: Workflow) -> None:
        if instance.builtin:
            raise Conflict(f"'{instance.name}' is a built-in workflow and cannot be deleted; "
                           f"set enabled or visible to false to retire it.")
        # Grants are generic rows that do not cascade; jobs keep their copy (the FK is SET_NULL).
        permissions.forget_object(instance)
        instance.delete()


routes = [("workflows", WorkflowViewSet, "workflow")]
urlpatterns: list = []
