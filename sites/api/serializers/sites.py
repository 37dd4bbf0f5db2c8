"""Sites, nodes, queues, site settings and site tasks as the API reference shapes them.

Nothing here queries the database while representing an object: the viewsets select and
prefetch every relation used (spaces of a site, queues of a node, nodes of a queue), and the
heartbeat cutoff that decides ``online`` is computed once per request and passed in the context.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from hub import audit
from hub.api.serializers.common import SafeJSONField
from sites.models import DEFAULT_QUEUE, NAME_VALIDATOR, Node, Queue, SettingsTask, Site, SiteSetting, heartbeat_cutoff
from sites.services.nodes import CRITICAL, OK, WARNING
from sites.services.sites import SETTING_KEY_HELP, validate_setting_values

TIMEZONES = frozenset(zoneinfo.available_timezones())
# One choice set for every health ``status`` (sites, nodes, hub checks), so the schema has one enum.
HEALTH_STATUSES = [OK, WARNING, CRITICAL]

# Glob lists are applied to every path a workflow touches on the site: keep them bounded.
MAX_GLOBS = 500
MAX_GLOB_LENGTH = 1024
# The site's name is also its agents' broker queue name (sites.services.sites).
NAME_HELP = "Site Name. Must match [a-zA-Z0-9-_]+"


def _absolute(request, url: str) -> str:
    return request.build_absolute_uri(url) if request is not None else url


def _cutoff(context: dict[str, Any]) -> datetime:
    """The request's heartbeat cutoff (computed once by the view); a fresh one outside a view."""
    cutoff = context.get("heartbeat_cutoff")
    return cutoff if cutoff is not None else heartbeat_cutoff()


class GlobField(serializers.CharField):
    """One glob pattern: a JSON string (a number is not a pattern someone meant to write)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Each pattern must be a string.")
        return super().to_internal_value(data)


class GlobListField(serializers.ListField):
    """A list of glob patterns (``*.tmp``, ``/scratch/**``): non-empty strings, bounded in size."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", GlobField(max_length=MAX_GLOB_LENGTH, allow_blank=False, trim_whitespace=False))
        kwargs.setdefault("max_length", MAX_GLOBS)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        # ListField would accept a dict's keys or a string's characters in some versions; a glob
        # list is a JSON array and nothing else.
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected a list of glob patterns, e.g. [\"*.tmp\", \"/scratch/**\"].")
        return super().to_internal_value(data)


class ColorField(serializers.ListField):
    """An RGB or RGBA colour: ``[r, g, b]`` or ``[r, g, b, a]`` with integers 0-255 (``[]``: none)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("child", serializers.IntegerField(min_value=0, max_value=255))
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[int]:
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected [r, g, b] or [r, g, b, a] with integers 0-255.")
        if any(isinstance(item, bool) or not isinstance(item, int) for item in data):
            raise serializers.ValidationError("Each component must be an integer 0-255 (not a string or a float).")
        value = super().to_internal_value(data)
        if len(value) not in (0, 3, 4):
            raise serializers.ValidationError("Give 3 (RGB) or 4 (RGBA) integers 0-255, or [] for no colour.")
        return value


class SpaceRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True, help_text="Space Name")
    url = serializers.SerializerMethodField()

    def get_url(self, space) -> str:
        return _absolute(self.context.get("request"), reverse("space-detail", args=[space.pk]))


class SiteSerializer(serializers.ModelSerializer):
    """A site. Counts are written by the agent's inventory; ``spaces`` are placed via /api/spaces/."""

    url = serializers.HyperlinkedIdentityField(view_name="site-detail")
    editable = serializers.SerializerMethodField(help_text="Whether the caller may change this site")
    name = serializers.CharField(
        max_length=100, help_text=NAME_HELP, validators=[NAME_VALIDATOR],
    )
    shortcode = serializers.CharField(max_length=20, help_text="Shortcode. Must match [a-zA-Z0-9-_]+",
                                      validators=[NAME_VALIDATOR])
    timezone = serializers.CharField(max_length=64, required=False,
                                     help_text="IANA time zone of the site, e.g. 'Europe/London'")
    color = ColorField(help_text="[r, g, b] or [r, g, b, a], integers 0-255")
    include = GlobListField(help_text="Global workflow includes for this site (glob patterns)")
    exclude = GlobListField(help_text="Global workflow excludes for this site (glob patterns)")
    bandwidth = serializers.IntegerField(min_value=0, max_value=2**31 - 1, allow_null=True, required=False,
                                         help_text="speed for site (in Mb/s)")
    lock_threshold = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False,
                                              help_text="Threshold for soft locking snapshot rotations")
    spaces = SpaceRefSerializer(many=True, read_only=True)

    class Meta:
        model = Site
        fields = [
            "am_i_configured", "bandwidth", "color", "description", "directories_count", "editable",
            "elasticsearch_url", "enable_auto_file_batch_sizing", "exclude", "file_batch_gb", "file_batch_size",
            "files_count", "files_hydrated_count", "files_stubbed_count", "filesystem_type", "gpfs_iscan_buckets",
            "gpfs_iscan_threads", "id", "include", "inventory_updated", "label", "lock_threshold", "name",
            "pixstor_search_url", "public_url", "ready_to_configure", "shortcode", "spaces", "timezone", "type",
            "url",
        ]
        read_only_fields = [
            "id", "directories_count", "files_count", "files_hydrated_count", "files_stubbed_count",
            "inventory_updated",
        ]
        extra_kwargs = {
            "am_i_configured": {"help_text": "Boolean field determining if UI has been configured for the site"},
            "ready_to_configure": {"help_text": "Boolean to check if site is ready to configure"},
            "label": {"help_text": "Human readable name for this site"},
            "public_url": {"help_text": "The base URL by which this site can be reached"},
            "pixstor_search_url": {"help_text": "The base URL for querying the PixStor API"},
            "elasticsearch_url": {"help_text": "URL of the Elasticsearch server to use for the Analytics search "
                                               "backend on this site"},
            "enable_auto_file_batch_sizing": {"help_text": "If optimal batch size should be determined at runtime."},
            "file_batch_gb": {"help_text": "File batch GB (1-10000)"},
            "file_batch_size": {"help_text": "File batch size (1-100000)"},
            "gpfs_iscan_buckets": {"help_text": "Number of buckets to use for the gpfs snapdiff policy"},
            "gpfs_iscan_threads": {"help_text": "Number of threads to use for the gpfs snapdiff policy"},
            "type": {"help_text": "Type indicating where the site (pixstor) is deployed"},
            "filesystem_type": {"help_text": "posix, or gpfs for IBM Storage Scale / PixStor"},
            "description": {"help_text": "Free text describing the site"},
            "directories_count": {"help_text": "How many directories this site has (reported by the agent)"},
            "files_count": {"help_text": "How many files this site has (reported by the agent)"},
            "files_hydrated_count": {"help_text": "How many files hydrated this site has (reported by the agent)"},
            "files_stubbed_count": {"help_text": "How many files stubbed this site has (reported by the agent)"},
            "inventory_updated": {"help_text": "When the agent last reported the site's inventory"},
        }

    def get_fields(self):
        fields = super().get_fields()
        # Case-insensitive uniqueness: "Lab" and "lab" would be one site to a person and two
        # broker queues to the agents.
        fields["name"].validators.append(UniqueValidator(
            Site.objects.all(), lookup="iexact", message="A site with this name already exists."))
        fields["shortcode"].validators.append(UniqueValidator(
            Site.objects.all(), lookup="iexact", message="A site with this shortcode already exists."))
        return fields

    @extend_schema_field(serializers.BooleanField())
    def get_editable(self, site: Site) -> bool:
        editable = self.context.get("editable")
        return bool(editable(site)) if editable is not None else False

    def validate_timezone(self, value: str) -> str:
        if value not in TIMEZONES:
            raise serializers.ValidationError(f"'{value}' is not an IANA time zone name such as 'Europe/London'.")
        return value


class NodeSerializer(serializers.ModelSerializer):
    """An agent node. Every field comes from the node's heartbeats; none is set by users."""

    url = serializers.HyperlinkedIdentityField(view_name="node-detail")
    site = serializers.CharField(source="site.name", read_only=True)
    online = serializers.SerializerMethodField(help_text="Whether the last heartbeat is recent enough "
                                                         "(node_health_last_heartbeat_interval)")
    has_default_queue = serializers.SerializerMethodField(help_text="Whether the node consumes the default queue")
    queues = serializers.SerializerMethodField(help_text="Names of the queues the node consumes")

    # Fields a client might try to write; each is refused with the reason (see validate).
    HEARTBEAT_FIELDS = ("name", "site", "last_heartbeat", "queues", "online", "has_default_queue", "info")

    class Meta:
        model = Node
        fields = ["has_default_queue", "id", "last_heartbeat", "name", "online", "queues", "site", "url"]
        read_only_fields = ["id", "last_heartbeat", "name"]
        extra_kwargs = {
            "name": {"help_text": "Hostname for a given worker node"},
            "last_heartbeat": {"help_text": "Time the node sent its last heartbeat event"},
        }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        refused = {
            name: ["Set by the node's heartbeats; it cannot be changed through the API."]
            for name in self.HEARTBEAT_FIELDS if name in data
        }
        if refused:
            raise serializers.ValidationError(refused)
        return super().to_internal_value(data)

    @extend_schema_field(serializers.BooleanField())
    def get_online(self, node: Node) -> bool:
        return node.is_online(_cutoff(self.context))

    @extend_schema_field(serializers.BooleanField())
    def get_has_default_queue(self, node: Node) -> bool:
        return any(queue.name == DEFAULT_QUEUE for queue in node.queues.all())

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_queues(self, node: Node) -> list[str]:
        return sorted(queue.name for queue in node.queues.all())


class QueueSerializer(serializers.ModelSerializer):
    """A site's queue and the nodes consuming it (both reported by heartbeats)."""

    url = serializers.HyperlinkedIdentityField(view_name="queue-detail")
    site = serializers.CharField(source="site.name", read_only=True)
    nodes = serializers.SerializerMethodField(help_text="Names of the nodes consuming this queue")
    is_default = serializers.BooleanField(read_only=True, help_text="Whether this is the site's default queue")
    online = serializers.SerializerMethodField(help_text="Whether at least one online node consumes this queue "
                                                         "(work sent here will run)")

    class Meta:
        model = Queue
        fields = ["id", "is_default", "label", "last_heartbeat", "name", "nodes", "online", "site", "url"]
        read_only_fields = fields
        extra_kwargs = {
            "name": {"help_text": "Queue name. Must match [a-zA-Z0-9-_]+"},
            "label": {"help_text": "UI facing label for the queue"},
            "last_heartbeat": {"help_text": "Newest heartbeat of any node consuming the queue"},
        }

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_nodes(self, queue: Queue) -> list[str]:
        return sorted(node.name for node in queue.nodes.all())

    @extend_schema_field(serializers.BooleanField())
    def get_online(self, queue: Queue) -> bool:
        cutoff = _cutoff(self.context)
        return any(node.is_online(cutoff) for node in queue.nodes.all())


class SettingsTaskSerializer(serializers.ModelSerializer):
    """A piece of work sent to a site's agent. ``request``/``results`` have secret-looking keys masked."""

    url = serializers.HyperlinkedIdentityField(view_name="settingstask-detail")
    site = serializers.CharField(source="site.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True,
                                       default=None, help_text="Who asked for the task (null: the hub itself)")
    request = serializers.SerializerMethodField(help_text="The order sent to the agent")
    results = serializers.SerializerMethodField(help_text="What the agent reported")
    runtime = serializers.SerializerMethodField(help_text="Seconds between start and completion (or now, while "
                                                          "running); null before the task starts")

    class Meta:
        model = SettingsTask
        fields = ["completed", "created", "created_by", "friendly_name", "id", "job", "request", "results",
                  "runtime", "site", "started", "state", "task_id", "tasktype", "url"]
        read_only_fields = fields
        extra_kwargs = {
            "completed": {"help_text": "Time of the task completion"},
            "friendly_name": {"help_text": "Text to be used to describe what this task is doing."},
            "started": {"help_text": "Time that the task started running"},
            "created": {"help_text": "Time the hub recorded the task"},
        }

    @extend_schema_field(serializers.JSONField())
    def get_request(self, task: SettingsTask) -> Any:
        return audit.redact(task.request)

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_results(self, task: SettingsTask) -> Any:
        return audit.redact(task.results)

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_runtime(self, task: SettingsTask) -> float | None:
        runtime = task.runtime
        return round(runtime.total_seconds(), 3) if runtime is not None else None


class SiteSettingSerializer(serializers.ModelSerializer):
    value = SafeJSONField(allow_null=True, required=False)

    class Meta:
        model = SiteSetting
        fields = ["id", "key", "value", "desc"]
        read_only_fields = ["id", "desc"]
        extra_kwargs = {"key": {"validators": [], "help_text": SETTING_KEY_HELP}}


class SiteSettingsPatchSerializer(serializers.Serializer):
    """``{"values": [{"key", "value"}]}``; a ``null`` value deletes the key."""

    values = SiteSettingSerializer(many=True, allow_empty=False, max_length=1000)

    def validate_values(self, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in values:
            if "value" not in item:
                raise serializers.ValidationError(f"'{item['key']}': value is required (null deletes the key).")
        # One rule for keys, shared with the service (format, uniqueness within the request).
        return validate_setting_values(values)


class FlatQuerySerializer(serializers.Serializer):
    flat = serializers.BooleanField(required=False, default=False, help_text="Return flat dict")


class TaskAcceptedSerializer(serializers.Serializer):
    """What a 202 for work sent to a site's agent carries."""

    id = serializers.IntegerField(help_text="The SettingsTask id")
    task_id = serializers.CharField(help_text="The task id the agent reports under")
    url = serializers.URLField(help_text="Where to follow the task")
    agent_online = serializers.BooleanField(help_text="Whether an agent node of the site is online to run it")
    detail = serializers.CharField(required=False, help_text="Present when no agent is online to run it yet")


class SiteSettingsAcceptedSerializer(TaskAcceptedSerializer):
    changes = serializers.DictField(help_text="{key: [old, new]} for each changed key (secrets masked)")


class SettingsRefreshAcceptedSerializer(TaskAcceptedSerializer):
    created = serializers.ListField(child=serializers.CharField(), help_text="Default keys that were missing "
                                                                             "and have been created")


class NodeHealthSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    online = serializers.BooleanField()
    last_heartbeat = serializers.DateTimeField(allow_null=True)
    seconds_since_heartbeat = serializers.FloatField(allow_null=True)
    queues = serializers.ListField(child=serializers.CharField())


class HealthFieldsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=HEALTH_STATUSES)
    reason = serializers.CharField()
    online_nodes = serializers.IntegerField()
    total_nodes = serializers.IntegerField()
    nodes = NodeHealthSerializer(many=True)
    checked = serializers.DateTimeField()


class SiteHealthSerializer(SiteSerializer):
    """The schema of ``/sites/{id}/health/``: the site, plus its health."""

    # A plain string here: a second component carrying the site-type enum would make the schema
    # generator name that enum by a hash instead of "SiteTypeEnum".
    type = serializers.CharField(read_only=True, help_text="Type indicating where the site (pixstor) is deployed")
    status = serializers.ChoiceField(choices=HEALTH_STATUSES, read_only=True)
    reason = serializers.CharField(read_only=True)
    online_nodes = serializers.IntegerField(read_only=True)
    total_nodes = serializers.IntegerField(read_only=True)
    nodes = NodeHealthSerializer(many=True, read_only=True)
    checked = serializers.DateTimeField(read_only=True)

    class Meta(SiteSerializer.Meta):
        fields = [*SiteSerializer.Meta.fields, "status", "reason", "online_nodes", "total_nodes", "nodes",
                  "checked"]


class HubCheckSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=HEALTH_STATUSES)
    detail = serializers.CharField()
    seconds = serializers.FloatField()


class HealthSiteSerializer(HealthFieldsSerializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    label = serializers.CharField()
    url = serializers.URLField()


class HealthSerializer(serializers.Serializer):
    """The schema of ``/api/health/``."""

    status = serializers.ChoiceField(choices=HEALTH_STATUSES,
                                     help_text="The worst of the hub checks and the sites' health")
    checks = serializers.DictField(child=HubCheckSerializer(), help_text="database and broker")
    sites = HealthSiteSerializer(many=True)
    checked = serializers.DateTimeField()



class AgentKeyRequestSerializer(serializers.Serializer):
    rotate = serializers.BooleanField(default=False, help_text="Make a new key (agents need it re-installed)")


class AgentKeySerializer(serializers.Serializer):
    site = serializers.CharField(read_only=True)
    agent_key = serializers.CharField(read_only=True, help_text="Fernet key sealing credentials in orders")
