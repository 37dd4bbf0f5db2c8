"""Query filters of /buckets/ and /external_targets/."""

from __future__ import annotations

import django_filters
from django import forms

from sites.models import Bucket, ExternalTarget

MAX_ID = 2**63 - 1


class IdFilter(django_filters.NumberFilter):
    """An object id: an integer in the database's range (a bad one is a 400, never a 500)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class BucketFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(help_text="Exact bucket name")
    storage_type = django_filters.ChoiceFilter(choices=Bucket.StorageType.choices, help_text="s3, azure, gcs or fs")
    soft_deleting = django_filters.BooleanFilter(help_text="Buckets being deleted (or not)")

    class Meta:
        model = Bucket
        fields = ["name", "storage_type", "soft_deleting"]


class ExternalTargetFilterSet(django_filters.FilterSet):
    bucket = django_filters.CharFilter(field_name="bucket__name", help_text="External target bucket name")
    bucket_instance = IdFilter(field_name="bucket_id", help_text="External target bucket id")
    space = IdFilter(field_name="space_id", help_text="Id of the target's space")
    enabled = django_filters.BooleanFilter(help_text="Enabled targets (or disabled ones)")

    class Meta:
        model = ExternalTarget
        fields = ["bucket", "bucket_instance", "space", "enabled"]
