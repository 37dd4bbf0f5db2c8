"""Query filters of the workflow engine's list endpoints.

A value a filter cannot read is a 400 naming the parameter, never an ignored filter (which would
answer every row to a caller who asked for a subset) and never a 500.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_filters.widgets import QueryArrayWidget

from sites.models import Queue
from workflows.models import Job, JobStat, JobStatHistory, Task, Workflow
from workflows.models.jobs import path_digest
from workflows.states import JobState, LaunchedVia, PathState, TaskState

# --- workflows ---

_FLAG_TRUE = ("true", "True", "1")
_FLAG_CHOICES = [(value, value) for value in (*_FLAG_TRUE, "false", "False", "0")]
NO_DISCOVERY = "none"


class WorkflowFilterSet(django_filters.FilterSet):
    """Filters of ``/workflows/``. Flags take true/false (or 1/0): a choice rather than
    ``BooleanFilter``, which ignores a value it cannot read and would answer every workflow."""

    name = django_filters.CharFilter(help_text="Exact workflow name")
    enabled = django_filters.ChoiceFilter(choices=_FLAG_CHOICES, method="filter_flag",
                                          help_text="Is the workflow available for use?")
    visible = django_filters.ChoiceFilter(choices=_FLAG_CHOICES, method="filter_flag",
                                          help_text="Is the workflow visible on the UI?")
    external_only = django_filters.ChoiceFilter(choices=_FLAG_CHOICES, method="filter_flag",
                                                help_text="Workflows only allowed to operate on external targets")
    schedule_only = django_filters.ChoiceFilter(choices=_FLAG_CHOICES, method="filter_flag",
                                                help_text="Workflows only callable inside of a schedule")
    discovery = django_filters.ChoiceFilter(
        choices=[*Workflow.Discovery.choices, (NO_DISCOVERY, "None (the given paths only)")],
        method="filter_discovery", help_text="recursive, snapdiff, or none for workflows without discovery")

    class Meta:
        model = Workflow
        fields: list[str] = []

    def filter_flag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value in ("", None):
            return queryset
        return queryset.filter(**{name: value in _FLAG_TRUE})

    def filter_discovery(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value in ("", None):
            return queryset
        return queryset.filter(discovery__isnull=True) if value == NO_DISCOVERY else queryset.filter(discovery=value)


# --- jobs ---

_TRUE = ("true", "True", "1")
_BOOLEAN_CHOICES = [(value, value) for value in (*_TRUE, "false", "False", "0")]
# Ids are 64-bit: anything larger cannot name a row, and SQLite cannot even bind it.
_ID_LIMITS = {"min_value": -(2**63), "max_value": 2**63 - 1}
UNKNOWN_OWNER = -1
SYSTEM_OWNER = -2
SYSTEM_LAUNCHES = (LaunchedVia.SCHEDULE, LaunchedVia.POLICY)
_PERIOD = re.compile(r"^(\d{1,6})([mhdw])$")
_PERIOD_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_period(value: str, *, now: datetime | None = None) -> tuple[datetime, datetime | None]:
    """``"30m"``, ``"24h"``, ``"7d"``, ``"2w"``, ``"today"`` or ``"yesterday"`` as ``(start, end)``
    (``end`` None: up to now). Days start at midnight in the hub's time zone (UTC). ValueError
    for anything else."""
    now = now or timezone.now()
    text = value.strip().lower()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if text == "today":
        return midnight, None
    if text == "yesterday":
        return midnight - timedelta(days=1), midnight
    match = _PERIOD.match(text)
    if match is None:
        raise ValueError(value)
    amount, unit = int(match.group(1)), match.group(2)
    return now - timedelta(**{_PERIOD_UNITS[unit]: amount}), None


class PeriodField(forms.CharField):
    """A time period string, cleaned to ``(start, end)``."""

    def clean(self, value):
        value = super().clean(value)
        if value in (None, ""):
            return None
        try:
            return parse_period(value)
        except ValueError:
            raise forms.ValidationError(
                f"'{value}' is not a time period: use <number><m|h|d|w> (e.g. 30m, 24h, 7d, 2w), "
                "'today' or 'yesterday'."
            ) from None


class PeriodFilter(django_filters.Filter):
    field_class = PeriodField

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if not value:
            return qs
        start, end = value
        qs = qs.filter(**{f"{self.field_name}__gte": start})
        return qs.filter(**{f"{self.field_name}__lt": end}) if end is not None else qs


class IntListField(forms.Field):
    """Integers given repeated (``?ids=1&ids=2``) or comma-separated (``?ids=1,2``)."""

    widget = QueryArrayWidget

    def clean(self, value):
        values = [part.strip() for item in (value or []) for part in str(item).split(",") if part.strip()]
        numbers = []
        for part in values:
            try:
                number = int(part)
            except ValueError:
                raise forms.ValidationError(f"'{part}' is not an integer.") from None
            if not _ID_LIMITS["min_value"] <= number <= _ID_LIMITS["max_value"]:
                raise forms.ValidationError(f"{part} is out of range.")
            numbers.append(number)
        return numbers


class IntListFilter(django_filters.Filter):
    """``field__in`` the given integers (no value: no filtering)."""

    field_class = IntListField

    def filter(self, qs: QuerySet, value) -> QuerySet:
        if not value:
            return qs
        return qs.filter(**{f"{self.field_name}__in": value})


class IdFilter(django_filters.NumberFilter):
    """An integer id (``NumberFilter`` would take ``1.5``)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs = {**_ID_LIMITS, **kwargs}
        super().__init__(*args, **kwargs)


class StrictBooleanFilter(django_filters.ChoiceFilter):
    """true/false (or 1/0), cleaned to a bool; anything else is a 400, where ``BooleanFilter``
    would ignore it."""

    field_class = forms.TypedChoiceField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("choices", _BOOLEAN_CHOICES)
        kwargs.setdefault("coerce", self.truth)
        kwargs.setdefault("empty_value", None)
        super().__init__(*args, **kwargs)

    @staticmethod
    def truth(value: str) -> bool:
        return value in _TRUE

    def filter(self, qs: QuerySet, value: bool | None) -> QuerySet:
        # (With ``method``, django-filter calls the method instead, with the same bool.)
        if value is None:
            return qs
        return qs.filter(**{self.field_name: value})


class JobFilterSet(django_filters.FilterSet):
    """Filters of ``/jobs/`` and ``/jobs/stats/`` (the reference's full list)."""

    created = PeriodFilter(field_name="created", help_text="Time period string for filtering jobs by time: "
                           "<N>m, <N>h, <N>d, <N>w (e.g. 30m, 24h, 7d, 2w), today or yesterday")
    created_time_from = django_filters.IsoDateTimeFilter(
        method="filter_created_range", help_text="Start time of creation (UTC); discarded when created is given")
    created_time_to = django_filters.IsoDateTimeFilter(
        method="filter_created_range", help_text="End time of creation (UTC); discarded when created is given")
    completed_time_from = django_filters.IsoDateTimeFilter(
        field_name="completed", lookup_expr="gte", help_text="Start time for filtering jobs by completion time (UTC)")
    completed_time_to = django_filters.IsoDateTimeFilter(
        field_name="completed", lookup_expr="lte", help_text="End time for filtering jobs by completion time (UTC)")
    workflow = django_filters.CharFilter(field_name="workflow_name", help_text="Job workflow type (workflow name)")
    state = django_filters.MultipleChoiceFilter(choices=JobState.choices, help_text="Job states (repeat for several)")
    owner_ids = IntListFilter(method="filter_owner_ids", help_text="Job owner user IDs; -1 for the unknown owner, "
                              "-2 for system jobs (launched by a schedule or a policy)")
    clientkey_ids = IntListFilter(field_name="clientkey_id", help_text="Job client key IDs")
    schedule_ids = IntListFilter(field_name="schedule_id", help_text="Job schedule IDs")
    site = django_filters.CharFilter(field_name="site_name", help_text="Job site name")
    site_id = IdFilter(field_name="site_id", help_text="Job site ID")
    input_paths_prefix = django_filters.CharFilter(method="filter_input_paths_prefix",
                                                   help_text="Path prefix for the job paths")
    search_keyword = django_filters.CharFilter(method="filter_search_keyword", help_text="Keyword to filter by: "
                                               "job id, workflow, site, owner, input paths or state reason")
    hide_noop = StrictBooleanFilter(method="filter_hide_noop", help_text="Hide successful jobs with no processed files")
    queue = django_filters.CharFilter(field_name="queue", help_text="Job queue name")
    queue_id = IdFilter(method="filter_queue_id", help_text="Job queue ID")

    class Meta:
        model = Job
        fields: list[str] = []

    def filter_created_range(self, queryset: QuerySet, name: str, value: datetime | None) -> QuerySet:
        if value is None or self.form.cleaned_data.get("created"):
            return queryset
        lookup = "gte" if name == "created_time_from" else "lte"
        return queryset.filter(**{f"created__{lookup}": value})

    def filter_owner_ids(self, queryset: QuerySet, name: str, value: list[int]) -> QuerySet:
        if not value:
            return queryset
        condition = Q(owner_id__in=[number for number in value if number > 0])
        if UNKNOWN_OWNER in value:
            condition |= Q(owner__isnull=True) & ~Q(launched_via__in=SYSTEM_LAUNCHES)
        if SYSTEM_OWNER in value:
            condition |= Q(launched_via__in=SYSTEM_LAUNCHES)
        return queryset.filter(condition)

    def filter_input_paths_prefix(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # ``paths_text`` holds each input path after a "\n", so a prefix is one LIKE.
        return queryset.filter(paths_text__contains="\n" + value) if value else queryset

    def filter_search_keyword(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        condition = (Q(workflow_name__icontains=value) | Q(site_name__icontains=value)
                     | Q(owner__username__icontains=value) | Q(paths_text__icontains=value)
                     | Q(state_reason__icontains=value))
        if value.isdigit() and int(value) <= _ID_LIMITS["max_value"]:
            condition |= Q(pk=int(value))
        return queryset.filter(condition)

    def filter_hide_noop(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        if not value:
            return queryset
        return queryset.exclude(Q(state=JobState.SKIPPED) | Q(state=JobState.SUCCESS, paths_processed=0))

    def filter_queue_id(self, queryset: QuerySet, name: str, value: int | None) -> QuerySet:
        if value is None:
            return queryset
        queue = Queue.objects.filter(pk=value).values("name", "site_id").first()
        if queue is None:
            return queryset.none()
        return queryset.filter(queue=queue["name"], site_id=queue["site_id"])


class JobFilesFilterSet(django_filters.FilterSet):
    """``/jobs/{id}/files/``: the job's paths, optionally of one state (``category``)."""

    category = django_filters.ChoiceFilter(field_name="state", choices=PathState.choices,
                                           help_text="Path state: " + ", ".join(PathState.values))

    class Meta:
        model = JobStat
        fields: list[str] = []


class TaskFilterSet(django_filters.FilterSet):
    tasktype = django_filters.CharFilter(help_text="Task type")
    task_id = django_filters.UUIDFilter(help_text="The task id the agent reports under")
    state = django_filters.MultipleChoiceFilter(choices=TaskState.choices, help_text="Task states (repeat for several)")
    job_id = IdFilter(field_name="job_id", help_text="Job ID")
    internal = StrictBooleanFilter(field_name="internal", help_text="true: discovery and bookkeeping tasks only; "
                                   "false: data tasks only")

    class Meta:
        model = Task
        fields: list[str] = []


class TaskFilesFilterSet(django_filters.FilterSet):
    """``/tasks/{id}/files/``: the paths one task reported, optionally of one state."""

    state = django_filters.ChoiceFilter(choices=PathState.choices, help_text="Path state")

    class Meta:
        model = JobStatHistory
        fields: list[str] = []


class JobStatFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=PathState.choices, help_text="Path states (repeat for several)")
    job = IdFilter(field_name="job_id", help_text="Job ID")
    path = django_filters.CharFilter(method="filter_path", help_text="Target path (exact)")
    path_prefix = django_filters.CharFilter(field_name="path", lookup_expr="startswith",
                                            help_text="Paths starting with this prefix")
    history = StrictBooleanFilter(method="filter_history", help_text="Returns the task history along with each path")

    class Meta:
        model = JobStat
        fields: list[str] = []

    def filter_path(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # The digest is what the (job, path_key) index holds; the path itself guards collisions.
        return queryset.filter(path_key=path_digest(value), path=value) if value else queryset

    def filter_history(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        # Read by the view (it prefetches the history); no filtering.
        return queryset
