"""Validators shared by serializers."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


def reject_nul_characters(value: Any) -> Any:
    """PostgreSQL cannot store U+0000 in text or jsonb; refuse it as bad input rather than a 500."""
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError("Null characters are not allowed.")
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul_characters(key)
            reject_nul_characters(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            reject_nul_characters(item)
    return value


def json_depth(value: Any, depth: int = 0) -> int:
    if isinstance(value, dict):
        return max([json_depth(v, depth + 1) for v in value.values()] or [depth + 1])
    if isinstance(value, list):
        return max([json_depth(v, depth + 1) for v in value] or [depth + 1])
    return depth


class SafeJSONField(serializers.JSONField):
    """A JSON value that the database can store: no NUL characters, bounded nesting."""

    max_depth = 32

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        reject_nul_characters(value)
        if json_depth(value) > self.max_depth:
            raise serializers.ValidationError(f"Nested deeper than {self.max_depth} levels.")
        return value
