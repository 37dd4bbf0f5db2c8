"""Query filters of the catalog endpoints: inventory, data stores, IP addresses and site links.

Every filter lands on an indexed column: foreign keys (``site_id``, ``filesystem_id``,
``datastore_id``) are indexed by Django, site and data store names are unique. Two exceptions,
both on small tables: ``StoragePool.is_default`` (a site has a handful of pools) and
``DataStore.type`` (an estate has tens of data stores); an index would cost a migration for no
measurable gain.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet

from sites.models import DataStore, Filesystem, IPAddress, Server, Site, SiteLink, StoragePool

# A primary key never has more digits than this; longer numbers are names (or nonsense) and must
# not reach the database as an out-of-range integer.
_MAX_ID_DIGITS = 18


def name_or_id(field: str, value: str, model: type, *, scope: Q | None = None) -> Q:
    """Match ``field`` (a foreign key) by the related object's name, or by its id.

    Site names may be all digits (``NAME_VALIDATOR`` allows ``"42"``), so a value that is both a
    valid name and a valid id means the *name* when such an object exists and the id otherwise.
    That is decided inside the same SQL statement (``NOT EXISTS``), so the filter costs no extra
    query. ``scope`` narrows the name look-up (a filesystem name is only unique within a site).
    """
    by_name = Q(**{f"{field}__name": value})
    if not value.isdigit() or len(value) > _MAX_ID_DIGITS:
        return by_name
    named = model.objects.filter(name=value)
    if scope is not None:
        named = named.filter(scope)
    return by_name | (Q(**{f"{field}_id": int(value)}) & ~Exists(named))


def site_name_or_id(value: str) -> Q:
    """The site named ``value``, or the site with id ``value`` (the name wins, as in ``name_or_id``)."""
    by_name = Q(name=value)
    if not value.isdigit() or len(value) > _MAX_ID_DIGITS:
        return by_name
    return by_name | (Q(pk=int(value)) & ~Exists(Site.objects.filter(name=value)))


class IdFilter(django_filters.NumberFilter):
    """An integer id; decimals and numbers beyond a 64-bit key are a 400, never a database error."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class IPv4Filter(django_filters.Filter):
    """An exact IPv4 address; anything else is a 400 (PostgreSQL's inet column would raise)."""

    field_class = forms.GenericIPAddressField

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("protocol", "IPv4")
        super().__init__(*args, **kwargs)


class SiteNameOrIdFilter(django_filters.CharFilter):
    """``?site=`` accepting a site's name or its id (the name wins when both could match)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label", "Site name or id")
        kwargs.setdefault("max_length", 100)
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value: str) -> QuerySet:
        if value in ("", None):
            return qs
        return qs.filter(name_or_id(self.field_name, value, Site))


class _InventoryFilterSet(django_filters.FilterSet):
    site = SiteNameOrIdFilter(field_name="site")
    site_id = IdFilter(field_name="site_id", label="Site id")
    name = django_filters.CharFilter(max_length=255)


class ServerFilterSet(_InventoryFilterSet):
    class Meta:
        model = Server
        fields = ["site", "site_id", "name"]


class FilesystemFilterSet(_InventoryFilterSet):
    class Meta:
        model = Filesystem
        fields = ["site", "site_id", "name"]


class StoragePoolFilterSet(_InventoryFilterSet):
    filesystem = django_filters.CharFilter(
        method="filter_filesystem", max_length=255,
        label="Filesystem name or id (a name is unique within a site, so combine it with ?site=)",
    )
    is_default = django_filters.BooleanFilter()

    class Meta:
        model = StoragePool
        fields = ["site", "site_id", "name", "filesystem", "is_default"]

    def filter_filesystem(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        if not value:
            return qs
        # "The filesystem named 42" is looked for on the pool's own site, where names are unique.
        return qs.filter(name_or_id("filesystem", value, Filesystem, scope=Q(site_id=OuterRef("site_id"))))


class DataStoreFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(max_length=255)
    type = django_filters.MultipleChoiceFilter(choices=DataStore.Type.choices)

    class Meta:
        model = DataStore
        fields = ["name", "type"]


class IPAddressFilterSet(django_filters.FilterSet):
    datastore_id = IdFilter(field_name="datastore_id", label="Data store ID that the IP is assigned to")
    ipaddr = IPv4Filter(label="Exact IPv4 address")

    class Meta:
        model = IPAddress
        fields = ["datastore_id", "ipaddr"]


class SiteLinkFilterSet(django_filters.FilterSet):
    site_id = IdFilter(field_name="site_id", label="Site ID")
    datastore_id = IdFilter(field_name="datastore_id", label="Data store ID")

    class Meta:
        model = SiteLink
        fields = ["site_id", "datastore_id"]
