"""Query filters of /sites/, /nodes/, /queues/ and /settingstasks/ (every filtered column is indexed)."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from sites.models import Node, Queue, SettingsTask, Site, heartbeat_cutoff

_TRUE = ("true", "True", "1")
_BOOLEAN_CHOICES = [(value, value) for value in (*_TRUE, "false", "False", "0")]


class SiteFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(help_text="Exact site name")
    shortcode = django_filters.CharFilter(help_text="Exact shortcode")

    class Meta:
        model = Site
        fields = ["name", "shortcode"]


class NodeFilterSet(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="site__name", help_text="Name of the node's site")
    # A choice rather than BooleanFilter, which ignores a value it cannot read ("yes please")
    # and so answers every node to a caller who asked for a subset.
    online = django_filters.ChoiceFilter(method="filter_online", choices=_BOOLEAN_CHOICES,
                                         help_text="true: nodes whose last heartbeat is recent enough; false: the rest")

    class Meta:
        model = Node
        fields = ["site", "online"]

    def filter_online(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value in ("", None):
            return queryset
        recent = Q(last_heartbeat__gte=heartbeat_cutoff())
        return queryset.filter(recent) if value in _TRUE else queryset.exclude(recent)


class QueueFilterSet(django_filters.FilterSet):
    site = django_filters.CharFilter(field_name="site__name", help_text="Name of the queue's site")

    class Meta:
        model = Queue
        fields = ["site"]


class SettingsTaskFilterSet(django_filters.FilterSet):
    tasktype = django_filters.ChoiceFilter(choices=SettingsTask.TaskType.choices, help_text="Task type")
    state = django_filters.MultipleChoiceFilter(choices=SettingsTask.State.choices,
                                                help_text="Task states (repeat for several)")
    job_id = django_filters.NumberFilter(field_name="job", help_text="Job ID")
    site = django_filters.CharFilter(field_name="site__name", help_text="Name of the task's site")
    task_id = django_filters.UUIDFilter(help_text="The task id the agent reports under")

    class Meta:
        model = SettingsTask
        fields = ["tasktype", "state", "job_id", "site", "task_id"]
