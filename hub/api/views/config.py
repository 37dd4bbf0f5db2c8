"""Configurations, global settings, feature flags and the audit trail."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from hub import audit, configuration
from hub.api.serializers.audit import AUDIT_CSV_COLUMNS, AuditEventSerializer
from hub.api.serializers.config import (
    ConfigurationSerializer,
    FeatureSerializer,
    GlobalSettingSerializer,
    GlobalSettingsPatchSerializer,
    SettingsSyncSerializer,
)
from hub.api.streaming import stream_csv
from hub.api.viewsets import HubListRetrieveUpdateViewSet, HubReadOnlyViewSet, accepted
from hub.filtersets import AuditEventFilterSet
from hub.models import AuditEvent, ConfigurationValue, Feature, GlobalSetting
from hub.permissions import AdminOnlyPermission, AdminWritePermission
from hub.services import settings as settings_service

SettingsAccepted = inline_serializer(
    "SettingsAccepted",
    {"values": GlobalSettingSerializer(many=True), "tasks": serializers.ListField(child=serializers.DictField())},
)


class ConfigurationView(APIView):
    """API endpoint for viewing and setting configurations (administrators change them)."""

    permission_classes = [AdminWritePermission]

    @extend_schema(responses={200: ConfigurationSerializer})
    def get(self, request):
        return Response(configuration.current())

    @extend_schema(request=ConfigurationSerializer, responses={200: ConfigurationSerializer})
    def patch(self, request):
        serializer = ConfigurationSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        before = configuration.current()
        after = configuration.update(dict(serializer.validated_data))
        audit.record(request, "update", model=ConfigurationValue, object_repr="configurations",
                     changes=audit.diff(before, after))
        return Response(after)


class GlobalSettingsView(APIView):
    """Global key-value settings, stored in the hub and sent to every site."""

    permission_classes = [AdminWritePermission]

    @extend_schema(responses={200: GlobalSettingSerializer(many=True)})
    def get(self, request):
        return Response(GlobalSettingSerializer(GlobalSetting.objects.all(), many=True).data)

    @extend_schema(request=GlobalSettingsPatchSerializer, responses={202: SettingsAccepted})
    def patch(self, request):
        """Set or (with ``null``) delete settings; answers 202 with the per-site push tasks."""
        serializer = GlobalSettingsPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data["values"]
        changes = settings_service.apply_global_settings(request.user, values)
        tasks = settings_service.push_global_settings(request.user, site=None)
        audit.record(request, "update", model=GlobalSetting, object_repr="settings", changes=changes)
        current = GlobalSetting.objects.filter(key__in=[item["key"] for item in values])
        return accepted({"values": GlobalSettingSerializer(current, many=True).data, "tasks": tasks})


class GlobalSettingsSyncView(APIView):
    """Send the stored global settings to one site (``?site=``) or to every site."""

    permission_classes = [AdminOnlyPermission]

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("site", str, description="Site to sync; every site if not given")],
        responses={202: inline_serializer("SettingsSyncAccepted",
                                          {"tasks": serializers.ListField(child=serializers.DictField())})},
    )
    def post(self, request):
        params = SettingsSyncSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        site = settings_service.resolve_site(params.validated_data.get("site"))
        tasks = settings_service.push_global_settings(request.user, site=site)
        audit.record(request, "action", model=GlobalSetting, verb="sync", object_repr="settings",
                     changes={"site": site.name if site else None})
        return accepted({"tasks": tasks})


class FeatureViewSet(HubListRetrieveUpdateViewSet):
    """API endpoint for managing feature flags (administrators change them)."""

    queryset = Feature.objects.all()
    serializer_class = FeatureSerializer
    lookup_field = "name"
    lookup_value_regex = r"[^/]+"
    action_permissions = {"list": "authenticated", "retrieve": "authenticated", "partial_update": "admin"}

    def get_queryset(self):
        # Flags are hub-wide facts, visible to every signed-in user.
        return Feature.objects.all()


class AuditEventViewSet(HubReadOnlyViewSet):
    """The audit trail (administrators only). ``?download=csv`` streams the filtered rows as CSV."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    action_permissions = {"list": "admin", "retrieve": "admin"}

    def get_queryset(self):
        return AuditEvent.objects.all()

    @extend_schema(parameters=[OpenApiParameter("download", str, enum=["csv"],
                                                description="Download every matching event as CSV")])
    def list(self, request, *args, **kwargs):
        if request.query_params.get("download") == "csv":
            queryset = self.filter_queryset(self.get_queryset())
            serializer = AuditEventSerializer()

            def row(event):
                data = serializer.to_representation(event)
                return [data[column] for column in AUDIT_CSV_COLUMNS]

            return stream_csv(queryset, list(AUDIT_CSV_COLUMNS), row, filename="audit.csv")
        if request.query_params.get("download") not in (None, ""):
            raise serializers.ValidationError({"download": ["Only 'csv' is supported."]})
        return super().list(request, *args, **kwargs)


