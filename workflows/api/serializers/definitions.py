"""Workflows (definitions) as the API reference shapes them, plus read-only ``builtin`` and ``url``.

Every definition key is checked by ``workflows.definitions.validate_definition`` on the whole
definition a write would leave behind (a PATCH of the rules alone is checked against the stored
fields, and the other way round), so a stored workflow is always one a launch can trust.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from hub.api.serializers.common import SafeJSONField
from workflows.definitions import DEFINITION_KEYS, validate_definition
from workflows.models import Workflow
from workflows.models.workflow import WORKFLOW_NAME_VALIDATOR

MAX_ICON_CLASSES = 20
MAX_ICON_CLASS_LENGTH = 100


class IconClassesField(serializers.ListField):
    """CSS classes of the workflow's icon (``["fa", "fa-cloud-upload"]``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", serializers.CharField(max_length=MAX_ICON_CLASS_LENGTH))
        kwargs.setdefault("max_length", MAX_ICON_CLASSES)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            raise serializers.ValidationError('Expected a list of CSS class names, e.g. ["fa", "fa-cloud-upload"].')
        value = super().to_internal_value(data)
        if any(not item or any(ch.isspace() for ch in item) for item in value):
            raise serializers.ValidationError("Each class name must be non-empty and without white space.")
        return value


class WorkflowSerializer(serializers.ModelSerializer):
    """A workflow definition. Built-ins keep their name; everything else may be edited."""

    url = serializers.HyperlinkedIdentityField(view_name="workflow-detail")
    name = serializers.CharField(
        max_length=100, help_text="Name of Workflow (letters, digits, '_', '-' and '.'; no spaces)",
        validators=[WORKFLOW_NAME_VALIDATOR,
                    UniqueValidator(queryset=Workflow.objects.all(), message="A workflow with this name exists.")],
    )
    label = serializers.CharField(max_length=100, help_text="Friendly name of the workflow")
    icon_classes = IconClassesField(help_text="CSS classes of the workflow's icon")
    discovery = serializers.ChoiceField(
        choices=Workflow.Discovery.choices, allow_null=True, allow_blank=True, required=False,
        help_text="How entries are found: 'recursive' walks the given directories, 'snapdiff' compares snapshots; "
                  "null runs on the given paths only",
    )
    discovery_options = SafeJSONField(required=False, help_text="Options of the discovery task, e.g. "
                                                                '{"skip_missing": false}')
    fields = SafeJSONField(required=False, help_text='Runtime parameters: [{"name", "type", "label"?, "default"?, '
                                                     '"options"?, "required"?}]')
    filter_rules = SafeJSONField(required=False, help_text='Rules: [{"type", "state", "include"?, "exclude"?, '
                                                           '"action": [{"name": <task>, **kwargs}]}]')
    preferred_queue = serializers.CharField(max_length=100, allow_blank=True, required=False,
                                            help_text="Preferred queue for this workflow (a function queue name)")

    class Meta:
        model = Workflow
        fields = [
            "builtin", "discovery", "discovery_options", "enabled", "external_only", "fields", "filter_rules",
            "icon_classes", "id", "label", "name", "preferred_queue", "schedule_only", "url", "visible",
        ]
        read_only_fields = ["id", "builtin"]
        extra_kwargs = {
            "enabled": {"help_text": "Is the workflow available for use?"},
            "visible": {"help_text": "Is the workflow visible on the UI?"},
            "external_only": {
                "help_text": "Signifies that the workflow is only allowed to operate on external targets",
            },
            "schedule_only": {"help_text": "Workflow only callable inside of a schedule"},
            "builtin": {"help_text": "Made by the hub; may be edited, not renamed or deleted"},
        }

    def validate_name(self, value: str) -> str:
        instance = self.instance
        if instance is not None and instance.builtin and value != instance.name:
            raise serializers.ValidationError(f"'{instance.name}' is a built-in workflow: its name cannot change.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        merged = {key: getattr(self.instance, key) for key in DEFINITION_KEYS} if self.instance else {}
        merged.update({key: attrs[key] for key in DEFINITION_KEYS if key in attrs})
        cleaned = validate_definition(merged)
        # Write back what the request touched (normalised); keys it did not send stay as stored.
        # On create every key is written, so a new row holds the normalised definition.
        for key in DEFINITION_KEYS:
            if key in attrs or self.instance is None:
                attrs[key] = cleaned[key]
        return attrs
