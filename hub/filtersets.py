"""Query filters of the hub's list endpoints (every filtered column is indexed or unique)."""

from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from hub.models import AuditEvent, ClientKey

User = get_user_model()


class UserFilterSet(django_filters.FilterSet):
    username = django_filters.CharFilter(lookup_expr="icontains")
    email = django_filters.CharFilter(lookup_expr="iexact")
    group = django_filters.CharFilter(field_name="groups__name", label="Member of the group with this name")

    class Meta:
        model = User
        fields = ["username", "email", "is_active", "group"]


class GroupFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Group
        fields = ["name"]


class PermissionFilterSet(django_filters.FilterSet):
    app_label = django_filters.CharFilter(field_name="content_type__app_label")
    model = django_filters.CharFilter(field_name="content_type__model")

    class Meta:
        model = Permission
        fields = ["codename", "app_label", "model"]


class ClientKeyFilterSet(django_filters.FilterSet):
    user = django_filters.CharFilter(field_name="user__username")

    class Meta:
        model = ClientKey
        fields = ["user", "name"]


class AuditEventFilterSet(django_filters.FilterSet):
    username = django_filters.CharFilter()
    client_key = django_filters.NumberFilter(field_name="client_key_id")
    action = django_filters.MultipleChoiceFilter(choices=AuditEvent.Action.choices)
    model = django_filters.CharFilter()
    object_pk = django_filters.CharFilter()
    verb = django_filters.CharFilter()
    ip_address = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["username", "client_key", "action", "model", "object_pk", "verb", "ip_address", "since", "until"]
