"""The keys of ``/api/configurations/``: type, default, allowed range and meaning of each.

Defaults follow the product notes. Only values an administrator changed are stored
(``ConfigurationValue``); ``get`` falls back to the default here, so code reads one function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rest_framework import serializers


@dataclass(frozen=True)
class ConfigKey:
    name: str
    kind: str  # "int", "float", "bool", "str", "choice", "str_list", "abs_path"
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = field(default_factory=tuple)


DAY = 86400
CONFIGURATION_KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("analytics_timeout", "int", 10, "Maximum time to wait for results from analytics in seconds", 1, 3600),
    ConfigKey("custom_statistics_tasks", "str_list", [], "A list of custom tasks to be considered discovery tasks"),
    ConfigKey("default_space_location", "abs_path", "", "Default location for space (an absolute path, or empty)"),
    ConfigKey("force_local_managed_users", "bool", False, "Allow NAS users to be managed on AD joined sites"),
    ConfigKey("health_timeout", "int", 10,
              "Maximum time to wait health check to see what sites are available in seconds", 1, 600),
    ConfigKey("initial_gid", "int", 100000, "Minimum GID to be configured", 1000, 2**31 - 2),
    ConfigKey("initial_uid", "int", 100000, "Minimum UID to be configured", 1000, 2**31 - 2),
    ConfigKey("jobs_ttl", "int", 90, "Time to store job details after the job completes, in days", 1, 36500),
    ConfigKey("maximum_external_results", "int", 100,
              "Maximum number of items to retrieve per page from an external target scan", 1, 10000),
    ConfigKey("node_health_last_heartbeat_interval", "int", 120,
              "The time since the last health heartbeat was recorded in seconds", 10, DAY),
    ConfigKey("salt_task_timeout", "float", 60.0,
              "Kept for API compatibility with the product; this hub does not use Salt", 1, 3600),
    ConfigKey("schedules_enabled", "bool", True, "Allow processing of automated schedules"),
    ConfigKey("search_backend", "choice", "database", "Search backend", choices=("database", "elasticsearch")),
    ConfigKey("search_max_results", "int", 200, "Maximum search results per site", 1, 100000),
    ConfigKey("search_result_ttl", "int", 7, "Maximum time to store search results in days", 1, 365),
    ConfigKey("snapdiff_stream_timeout", "int", 10, "Maximum amount of minutes to wait for task results", 1, 1440),
    ConfigKey("snapshot_create_delete_retry_timeout", "int", 1000,
              "Maximum time for workers to retry snapshot create and delete operations, in seconds", 0, DAY),
    ConfigKey("stat_refresh_period", "int", 10, "Maximum time to wait for results from stat in seconds", 1, 3600),
    ConfigKey("stat_timeout", "int", 10, "Maximum time to wait for results from stat in seconds", 1, 3600),
    ConfigKey("task_invalidation_timeout", "int", 360,
              "Maximum amount of minutes before a task in the STARTED state is considered invalid", 1, 60 * 24 * 30),
)
KEYS_BY_NAME = {key.name: key for key in CONFIGURATION_KEYS}


def _validate_absolute_path(value: str) -> None:
    if value and (not value.startswith("/") or "\x00" in value or "/../" in f"{value}/"):
        raise serializers.ValidationError("Must be empty or an absolute path without '..'.")


def serializer_field(key: ConfigKey) -> serializers.Field:
    """The DRF field that validates values of ``key``."""
    common = {"required": False, "help_text": key.help}
    if key.kind == "int":
        return serializers.IntegerField(min_value=key.minimum, max_value=key.maximum, **common)
    if key.kind == "float":
        return serializers.FloatField(min_value=key.minimum, max_value=key.maximum, **common)
    if key.kind == "bool":
        return serializers.BooleanField(**common)
    if key.kind == "choice":
        return serializers.ChoiceField(choices=key.choices, **common)
    if key.kind == "str_list":
        return serializers.ListField(
            child=serializers.RegexField(r"^[A-Za-z0-9_.:-]+$", max_length=200), max_length=100, **common
        )
    if key.kind == "abs_path":
        return serializers.CharField(
            allow_blank=True, max_length=4096, validators=[_validate_absolute_path], **common
        )
    return serializers.CharField(allow_blank=True, max_length=1000, **common)


def current() -> dict[str, Any]:
    """Every configuration key with its effective value."""
    from hub.models import ConfigurationValue

    stored = dict(ConfigurationValue.objects.values_list("key", "value"))
    return {key.name: stored.get(key.name, key.default) for key in CONFIGURATION_KEYS}


def get(name: str) -> Any:
    """The effective value of one key."""
    from hub.models import ConfigurationValue

    key = KEYS_BY_NAME[name]
    value = ConfigurationValue.objects.filter(key=name).values_list("value", flat=True).first()
    return key.default if value is None else value


def update(values: dict[str, Any]) -> dict[str, Any]:
    """Store validated values; a value equal to the default removes the override."""
    from hub.models import ConfigurationValue

    for name, value in values.items():
        if value == KEYS_BY_NAME[name].default:
            ConfigurationValue.objects.filter(key=name).delete()
        else:
            ConfigurationValue.objects.update_or_create(key=name, defaults={"value": value})
    return current()
