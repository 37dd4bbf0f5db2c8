"""The launch request (``POST /api/file/workflow/`` and ``POST /api/jobs/``): shapes only; the
meaning (workflow, site, paths, fields) is checked by ``workflows.services.launch``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from workflows.services import LaunchRequest


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "object", "properties": {
    "path": {"type": "string"}, "size": {"type": "integer"}, "type": {"type": "string"}}, "required": ["path"]}]})
class PathItemField(serializers.Field):
    """A path as a string or as ``{"path", ...}``."""

    default_error_messages = {"invalid": "A path is a string or an object with a 'path' string."}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) or (isinstance(data, dict) and isinstance(data.get("path"), str)):
            return data
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


class LaunchSerializer(serializers.Serializer):
    site = serializers.CharField(max_length=100, help_text="Site name")
    workflow = serializers.CharField(max_length=100, help_text="Workflow name")
    paths = serializers.ListField(child=PathItemField(), allow_empty=False, max_length=10_000)
    fields = serializers.DictField(required=False, default=dict)
    include = serializers.ListField(child=serializers.CharField(max_length=1000), required=False, default=list)
    exclude = serializers.ListField(child=serializers.CharField(max_length=1000), required=False, default=list)
    ignore_site_includes = serializers.BooleanField(required=False, default=False)
    ignore_site_excludes = serializers.BooleanField(required=False, default=False)
    discovery = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=20,
                                      help_text="Discovery name: 'recursive', or null for the given paths only")
    queue = serializers.RegexField(r"^[A-Za-z0-9_-]+$", required=False, allow_null=True, max_length=100,
                                   help_text="Queue name")
    job = serializers.IntegerField(required=False, allow_null=True, min_value=1, help_text="Job ID")

    def to_request(self) -> LaunchRequest:
        data = self.validated_data
        given = "discovery" in self.initial_data
        return LaunchRequest(
            site=data["site"], workflow=data["workflow"], paths=list(data["paths"]), fields=dict(data["fields"]),
            include=list(data["include"]), exclude=list(data["exclude"]),
            ignore_site_includes=data["ignore_site_includes"], ignore_site_excludes=data["ignore_site_excludes"],
            discovery=(data.get("discovery") or None), discovery_given=given, queue=data.get("queue") or None,
            job=data.get("job"))
