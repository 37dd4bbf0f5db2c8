"""Spaces as the API reference shapes them: placements on sites, snapshot schedule, relationships.

Reading a space never queries the database per row: placements (with site and pool) and the
schedule come from the viewset's queryset, and ``relationships`` / ``nested_shares`` from a
``SpaceLinks`` batch that the viewset puts in the context and primes once per page.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from hub import permissions
from sites.api.serializers.common import as_drf
from sites.models import Site, SnapshotSchedule, Space, StoragePool
from sites.services.spaces import Placement
from sites.validators import CONTROL_CHARACTERS, clean_absolute_path

MAX_SIZE = 2**63 - 1

# --- snapshot schedule -----------------------------------------------------------------------------

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^([1-9]\d{0,4})([hdwmy])$")
# Hours per retention unit (a month counts 730 h, the average) and the longest retention allowed
# per unit: ten years, beyond which a snapshot is an archive, not a snapshot.
_UNIT_HOURS = {"h": 1, "d": 24, "w": 168, "m": 730, "y": 8760}
_UNIT_MAX = {"h": 87_600, "d": 3650, "w": 520, "m": 120, "y": 10}
_UNIT_NAMES = {"h": "hours", "d": "days", "w": "weeks", "m": "months", "y": "years"}
# Hours between two snapshots (a month: its shortest, 28 days).
_INTERVAL_HOURS = {"hourly": 1, "daily": 24, "weekly": 168, "monthly": 672}


def retention_hours(duration: str) -> int:
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(duration)
    return int(match.group(1)) * _UNIT_HOURS[match.group(2)]


class SnapshotScheduleSerializer(serializers.ModelSerializer):
    """When the agent snapshots the space (``time`` is HH:MM, 24 h, in the site's time zone; for an
    hourly schedule only the minutes count) and how long each snapshot is kept (``duration``:
    a number and a unit h, d, w, m (months) or y, e.g. ``7d``)."""

    frequency = serializers.ChoiceField(choices=SnapshotSchedule.Frequency.choices)
    time = serializers.CharField(max_length=5, help_text="HH:MM, 24-hour clock")
    duration = serializers.CharField(max_length=10, help_text="Retention: e.g. 24h, 7d, 4w, 12m, 1y")

    class Meta:
        model = SnapshotSchedule
        fields = ["id", "space", "frequency", "time", "duration"]
        read_only_fields = ["id", "space"]

    def validate_time(self, value: str) -> str:
        if not _TIME.match(value):
            raise serializers.ValidationError("Give the time as HH:MM on a 24-hour clock, e.g. '02:30'.")
        return value

    def validate_duration(self, value: str) -> str:
        match = _DURATION.match(value)
        if match is None:
            raise serializers.ValidationError(
                "Give the retention as a number and a unit: h (hours), d (days), w (weeks), m (months) or "
                "y (years), e.g. '7d'."
            )
        number, unit = int(match.group(1)), match.group(2)
        if number > _UNIT_MAX[unit]:
            raise serializers.ValidationError(
                f"Keep snapshots at most {_UNIT_MAX[unit]} {_UNIT_NAMES[unit]} (ten years)."
            )
        return value


def check_schedule(schedule: dict[str, Any]) -> None:
    """A complete schedule whose snapshots outlive the interval between them (otherwise there is
    at times no snapshot at all, which nobody who sets a schedule wants)."""
    missing = [key for key in ("frequency", "time", "duration") if not schedule.get(key)]
    if missing:
        raise serializers.ValidationError({"snapshot_schedule": {key: ["This field is required."] for key in missing}})
    if retention_hours(schedule["duration"]) < _INTERVAL_HOURS[schedule["frequency"]]:
        raise serializers.ValidationError({"snapshot_schedule": {"duration": [
            f"A {schedule['frequency']} snapshot must be kept at least until the next one is taken "
            f"({_INTERVAL_HOURS[schedule['frequency']]} hours)."
        ]}})


# --- sites of a space ------------------------------------------------------------------------------

_READ_ONLY_SITE_KEYS = {"id", "label", "usage"}


@extend_schema_field(
    inline_serializer("SpacePlacement", {
        "id": serializers.IntegerField(read_only=True),
        "name": serializers.CharField(),
        "label": serializers.CharField(read_only=True),
        "pool": serializers.CharField(allow_null=True, required=False,
                                      help_text="Storage pool name on the site ('filesystem/pool' if ambiguous)"),
        "usage": serializers.ListField(child=serializers.IntegerField(allow_null=True), read_only=True),
    }, many=True)
)
class PlacementsField(serializers.Field):
    """``sites``: read as ``[{id, name, label, pool, usage: [used_space, size]}]``; written as a list
    of site names or ``{name, pool?}`` objects (a read representation can be sent back as is)."""

    default_error_messages = {
        "not_a_list": "Give a list (at most 1000) of site names or {{name, pool}} objects.",
        "empty": "A space must be on at least one site.",
        "item": "Each site is a site name or a {{name, pool}} object (pool: a name, 'filesystem/pool' or an id).",
        "keys": "Unknown key(s) {keys} for a site (use name and pool).",
    }

    def to_representation(self, manager) -> list[dict[str, Any]]:
        space = manager.instance
        return [
            {"id": row.site.pk, "name": row.site.name, "label": row.site.label,
             "pool": row.pool.name if row.pool is not None else None,
             "usage": [row.used_space, space.size or None]}
            for row in manager.all()
        ]

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, list):
            self.fail("not_a_list")
        if not data:
            self.fail("empty")
        if len(data) > 1000:
            self.fail("not_a_list")
        items = []
        for item in data:
            if isinstance(item, str):
                items.append({"name": item, "pool_given": False, "pool": None})
                continue
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                self.fail("item")
            unknown = set(item) - {"name", "pool"} - _READ_ONLY_SITE_KEYS
            if unknown:
                self.fail("keys", keys=", ".join(sorted(map(str, unknown))))
            pool = item.get("pool")
            if pool is not None and (isinstance(pool, bool) or not isinstance(pool, (str, int))):
                self.fail("item")
            items.append({"name": item["name"], "pool_given": "pool" in item, "pool": pool})
        return items


def _resolve_pool(site: Site, pool: str | int, pools: list[StoragePool]) -> StoragePool:
    """A pool of ``site`` by id, name, or ``filesystem/name`` (names are unique per filesystem only)."""
    if isinstance(pool, int):
        matches = [candidate for candidate in pools if candidate.pk == pool]
    elif "/" in pool:
        fs_name, _, pool_name = pool.partition("/")
        matches = [c for c in pools if c.name == pool_name and c.filesystem.name == fs_name]
    else:
        matches = [candidate for candidate in pools if candidate.name == pool]
    if len(matches) > 1:
        raise serializers.ValidationError(
            f"Pool name '{pool}' is ambiguous on site '{site.name}': name it as 'filesystem/pool'."
        )
    if not matches:
        raise serializers.ValidationError(f"'{pool}' is not a storage pool of site '{site.name}'.")
    return matches[0]


# --- the space -------------------------------------------------------------------------------------

_RELATIONSHIPS = inline_serializer("SpaceRelationships", {
    "parents": inline_serializer("SpaceParent", {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "mountpoint": serializers.CharField(),
    }, many=True),
    "children": inline_serializer("SpaceChild", {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "mountpoint": serializers.CharField(),
    }, many=True),
})
_NESTED_SHARE = inline_serializer("SpaceNestedShare", {
    "type": serializers.CharField(help_text="nfs or smb"), "id": serializers.IntegerField(),
    "name": serializers.CharField(), "path": serializers.CharField(), "space": serializers.IntegerField(),
}, many=True)
_ON_SITE = inline_serializer("SpaceOnSite", {
    "ready": serializers.BooleanField(), "pool": serializers.CharField(allow_null=True),
})


class SpaceSerializer(serializers.ModelSerializer):
    """A space. ``mountpoint`` is fixed at creation; ``immutable`` may only be set at creation;
    ``allow_nested`` (write-only) permits a mountpoint inside or around another space of a site."""

    url = serializers.HyperlinkedIdentityField(view_name="space-detail")
    name = serializers.CharField(max_length=100, help_text="Space Name")
    mountpoint = serializers.CharField(max_length=4096, trim_whitespace=False, help_text="Mount point")
    color = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=255), required=False,
                                  max_length=4, help_text="RGB or RGBA, each 0-255 (empty: no colour)")
    size = serializers.IntegerField(min_value=0, max_value=MAX_SIZE, allow_null=True, required=False,
                                    help_text="Space size quota in bytes. No value (or 0) means as large as your "
                                              "system allows.")
    immutable = serializers.BooleanField(required=False, help_text="Space that once created cannot be deleted or "
                                                                   "updated. Usually the default space.")
    sites = PlacementsField(source="placements")
    snapshot_schedule = SnapshotScheduleSerializer(required=False, allow_null=True)
    allow_nested = serializers.BooleanField(write_only=True, required=False, default=False,
                                            help_text="Allow this space inside (or around) another space of a site")
    editable = serializers.SerializerMethodField()
    is_ready = serializers.SerializerMethodField()
    on_sites = serializers.SerializerMethodField()
    relationships = serializers.SerializerMethodField()
    nested_shares = serializers.SerializerMethodField()

    class Meta:
        model = Space
        fields = ["allow_nested", "color", "created", "editable", "id", "immutable", "is_ready", "mountpoint",
                  "name", "nested_shares", "on_sites", "permission_mode", "relationships", "sites", "size",
                  "snapshot_schedule", "url", "uuid"]
        read_only_fields = ["created", "id", "uuid"]

    # --- reading -----------------------------------------------------------------------------------
    @extend_schema_field(OpenApiTypes.BOOL)
    def get_editable(self, space: Space) -> bool:
        editable = self.context.get("editable")
        return bool(editable and editable(space)) and not space.immutable

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_is_ready(self, space: Space) -> bool:
        rows = list(space.placements.all())
        return bool(rows) and all(row.ready for row in rows)

    @extend_schema_field(serializers.DictField(child=_ON_SITE))
    def get_on_sites(self, space: Space) -> dict[str, dict[str, Any]]:
        return {
            row.site.name: {"ready": row.ready, "pool": row.pool.name if row.pool is not None else None}
            for row in space.placements.all()
        }

    def _links(self, space: Space) -> dict[str, Any]:
        links = self.context.get("space_links")
        if links is None:
            return {"relationships": {"parents": [], "children": []}, "nested_shares": []}
        return links.get(space)

    @extend_schema_field(_RELATIONSHIPS)
    def get_relationships(self, space: Space) -> dict[str, list[dict[str, Any]]]:
        return self._links(space)["relationships"]

    @extend_schema_field(_NESTED_SHARE)
    def get_nested_shares(self, space: Space) -> list[dict[str, Any]]:
        return self._links(space)["nested_shares"]

    # --- writing -----------------------------------------------------------------------------------
    def validate_name(self, value: str) -> str:
        if CONTROL_CHARACTERS.search(value) or "/" in value:
            raise serializers.ValidationError("A space name cannot contain '/' or control characters.")
        others = Space.objects.exclude(pk=self.instance.pk) if self.instance is not None else Space.objects.all()
        if others.filter(name=value).exists():
            raise serializers.ValidationError(f"A space named '{value}' already exists.")
        return value

    def validate_mountpoint(self, value: str) -> str:
        value = as_drf(clean_absolute_path, value)
        if self.instance is not None and value != self.instance.mountpoint:
            raise serializers.ValidationError(
                f"The mountpoint cannot be changed after the space is created (it is '{self.instance.mountpoint}'): "
                "jobs, shares and remote copies refer to it."
            )
        return value

    def validate_color(self, value: list[int]) -> list[int]:
        if value and len(value) < 3:
            raise serializers.ValidationError("Give 3 (RGB) or 4 (RGBA) values from 0 to 255, or [] for no colour.")
        return value

    def validate_immutable(self, value: bool) -> bool:
        if self.instance is not None and value != self.instance.immutable:
            raise serializers.ValidationError("'immutable' can only be set when the space is created.")
        return value

    def validate_sites(self, items: list[dict[str, Any]]) -> list[Placement]:
        names = [item["name"] for item in items]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise serializers.ValidationError(f"Site(s) given more than once: {', '.join(repeated)}.")
        request = self.context.get("request")
        user = getattr(request, "user", None)
        # Sites the caller may see, and those the space is already on (a space's administrator
        # may list them again without seeing the sites themselves).
        visible = permissions.restrict(Site.objects.filter(name__in=names), user).values("pk")
        sites = Site.objects.filter(name__in=names)
        if self.instance is not None:
            sites = sites.filter(Q(pk__in=visible) | Q(space_placements__space_id=self.instance.pk))
        else:
            sites = sites.filter(pk__in=visible)
        by_name = {site.name: site for site in sites.distinct()}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise serializers.ValidationError(f"No site named: {', '.join(repr(name) for name in unknown)}.")
        pools_of: dict[int, list[StoragePool]] = {}
        if any(item["pool"] is not None for item in items):
            for pool in StoragePool.objects.filter(site__in=list(by_name.values())).select_related("filesystem"):
                pools_of.setdefault(pool.site_id, []).append(pool)
        placements, errors = [], []
        for item in items:
            site = by_name[item["name"]]
            pool = None
            if item["pool"] is not None:
                try:
                    pool = _resolve_pool(site, item["pool"], pools_of.get(site.pk, []))
                except serializers.ValidationError as exc:
                    errors.extend(exc.detail)
                    continue
            placements.append(Placement(site=site, pool=pool, pool_given=item["pool_given"]))
        if errors:
            raise serializers.ValidationError(errors)
        return placements

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "snapshot_schedule" in attrs and attrs["snapshot_schedule"] is not None:
            schedule = dict(attrs["snapshot_schedule"])
            current = getattr(self.instance, "snapshot_schedule", None) if self.instance is not None else None
            if current is not None:
                # A PATCH may change one part of the schedule and keep the rest.
                schedule = {"frequency": current.frequency, "time": current.time, "duration": current.duration,
                            **schedule}
            check_schedule(schedule)
            attrs["snapshot_schedule"] = schedule
        return attrs
