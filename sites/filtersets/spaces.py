"""Query filters of /spaces/ and of the share lists (filtered columns are indexed or foreign keys)."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from sites.models import NfsShare, SmbShare, Space


class SpaceFilterSet(django_filters.FilterSet):
    site_id = django_filters.NumberFilter(field_name="placements__site_id", label="Site ID")
    search_keyword = django_filters.CharFilter(method="filter_keyword", label="Keyword to filter by",
                                               max_length=4096)

    class Meta:
        model = Space
        fields = ["site_id", "search_keyword"]

    def filter_keyword(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        """Case-insensitive match on the name or the mountpoint."""
        if "\x00" in value:
            return queryset.none()
        return queryset.filter(Q(name__icontains=value) | Q(mountpoint__icontains=value))


class NfsShareFilterSet(django_filters.FilterSet):
    space = django_filters.NumberFilter(field_name="space_id", label="Space ID")

    class Meta:
        model = NfsShare
        fields = ["space"]


class SmbShareFilterSet(django_filters.FilterSet):
    space = django_filters.NumberFilter(field_name="space_id", label="Space ID")

    class Meta:
        model = SmbShare
        fields = ["space"]
