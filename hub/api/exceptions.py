"""One JSON error format for the whole API, and no 500 for bad input.

DRF already answers its own exceptions as JSON; this handler adds the errors that escape from
Django and the database when a request is malformed or races another one, and JSON 404/500
pages for paths under /api/ that no view matched.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)


def _django_validation_detail(exc: DjangoValidationError):
    if hasattr(exc, "message_dict"):
        return exc.message_dict
    return {"non_field_errors": exc.messages}


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_detail(exc))
    elif isinstance(exc, RequestDataTooBig):
        set_rollback()
        return Response({"detail": "Request body is too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, IntegrityError):
        # A unique value taken by a concurrent request between validation and save.
        logger.info("integrity error answered as 409: %s", exc)
        set_rollback()
        return Response(
            {"detail": "The request conflicts with the current state of the resource (a value must be unique)."},
            status=status.HTTP_409_CONFLICT,
        )
    elif isinstance(exc, DataError):
        # The database refused a value that validation let through (a NUL byte in a lookup or
        # filter, a number out of the column's range): bad input, not a server fault.
        logger.info("data error answered as 400: %s", exc)
        set_rollback()
        return Response(
            {"detail": "A value in the request cannot be stored or searched "
                       "(too long, out of range, or containing a NUL character)."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(str(exc) or "Malformed request.")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.Throttled):
        response.data["code"] = "throttled"
    return response


def json_not_found(request, exception=None):
    """handler404: JSON for API clients, the same body DRF gives for a missing object."""
    return JsonResponse({"detail": "Not found."}, status=404)


def json_server_error(request):
    """handler500: never an HTML traceback page to an API client."""
    return JsonResponse({"detail": "Internal server error."}, status=500)


class Conflict(exceptions.APIException):
    """409: the request is valid but the resource's current state forbids it (in use, busy)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is in use."
    default_code = "conflict"


class AgentUnavailable(exceptions.APIException):
    """504: the site's agent did not answer in time (offline, or busy)."""

    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_detail = "The site's agent did not answer in time."
    default_code = "agent_timeout"
