"""Configurations, global settings and feature flags."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from hub.api.serializers.common import SafeJSONField
from hub.configuration import CONFIGURATION_KEYS, serializer_field
from hub.models import Feature, GlobalSetting


class ConfigurationSerializer(serializers.Serializer):
    """Every key of /api/configurations/ with its type and allowed range."""

    def get_fields(self):
        return {key.name: serializer_field(key) for key in CONFIGURATION_KEYS}

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        unknown = sorted(set(data) - {key.name for key in CONFIGURATION_KEYS})
        if unknown:
            raise serializers.ValidationError({name: ["Unknown configuration key."] for name in unknown})
        return super().to_internal_value(data)


# ``section:key`` as the product uses, e.g. ``ngenea:realm`` or ``ngeneahsm_targets:devaws:Storage``.
SETTING_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)+$")


class GlobalSettingSerializer(serializers.ModelSerializer):
    value = SafeJSONField(allow_null=True, required=False)

    class Meta:
        model = GlobalSetting
        fields = ["id", "key", "value", "desc"]
        read_only_fields = ["id", "desc"]
        extra_kwargs = {"key": {"validators": []}}  # PATCH of an existing key is an update

    def validate_key(self, value: str) -> str:
        if not SETTING_KEY.match(value):
            raise serializers.ValidationError(
                "A setting key is 'section:name' (letters, digits, '_', '.', '-' separated by ':')."
            )
        return value


class GlobalSettingsPatchSerializer(serializers.Serializer):
    values = GlobalSettingSerializer(many=True, allow_empty=False, max_length=1000)

    def validate_values(self, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = [item["key"] for item in values]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Keys given more than once: {', '.join(duplicates)}.")
        for item in values:
            if "value" not in item:
                raise serializers.ValidationError(f"'{item['key']}': value is required (null deletes the key).")
        return values


class SettingsSyncSerializer(serializers.Serializer):
    site = serializers.CharField(required=False, max_length=100)


class FeatureSerializer(serializers.ModelSerializer):
    class Meta:
        model = Feature
        fields = ["name", "description", "enabled"]
        read_only_fields = ["name", "description"]
        extra_kwargs = {
            "name": {"help_text": "Name of the feature"},
            "description": {"help_text": "Description of what the feature does"},
            "enabled": {"help_text": "Whether the feature has been enabled", "required": True},
        }
