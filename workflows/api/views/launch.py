"""Launching a workflow: ``POST /api/file/workflow/`` (and ``POST /api/jobs/``, which calls
``launch``). Answers 202 with the job and its URL."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.audit import record as audit_record
from hub.models import ClientKey
from workflows import services
from workflows.api.serializers.launch import LaunchSerializer
from workflows.states import LaunchedVia


def launch(request: Request, *, via: str | None = None) -> Response:
    """Validate the body, start the job, answer 202 with the job's representation."""
    serializer = LaunchSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    clientkey = request.auth if isinstance(request.auth, ClientKey) else None
    if via is None:
        via = LaunchedVia.MANUAL if isinstance(request.successful_authenticator, SessionAuthentication) \
            else LaunchedVia.API
    job = services.launch(serializer.to_request(), actor=request.user, clientkey=clientkey, via=via)
    audit_record(request, "create", instance=job, verb="launch",
                 changes={"workflow": job.workflow_name, "site": job.site_name, "paths": len(job.paths)})
    return Response(_represent(job, request), status=status.HTTP_202_ACCEPTED)


def _represent(job: Any, request: Request) -> dict[str, Any]:
    from workflows.api.serializers import jobs as job_serializers

    return dict(job_serializers.JobSerializer(job, context={"request": request}).data)


class FileWorkflowView(APIView):
    """Performs a workflow on a list of files."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=LaunchSerializer, responses={202: LaunchSerializer}, operation_id="file_workflow_create")
    def post(self, request: Request) -> Response:
        return launch(request)


routes: list = []
urlpatterns: list = [path("file/workflow/", FileWorkflowView.as_view(), name="file-workflow")]
