"""Estate API views: the catalog.

* Inventory, read-only (``/servers/``, ``/storagepools/``, ``/filesystems/``, ``/filesets/``): rows
  written only by the agent's inventory report (``sites.services.inventory``). Whoever may view a
  site sees its inventory (``permission_parents``).
* Data stores (external endpoints, credentials encrypted and masked), their IP addresses, and
  site links (a site directory linked to a data store path).
* File status types (how the UI shows HSM states) and search tags, readable by anyone signed in.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.db.models import BooleanField, Case, Value, When
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from hub import permissions
from hub.api.exceptions import Conflict
from hub.api.viewsets import HubListRetrieveUpdateViewSet, HubModelViewSet, HubReadOnlyViewSet
from hub.permissions import CHANGE, VIEW, restrict
from hub.secrets import MASK
from sites.api.serializers.catalog import (
    SECRET_FIELDS,
    DataStoreSerializer,
    FilesetQuerySerializer,
    FilesetSerializer,
    FileStatusTypeSerializer,
    FilesystemSerializer,
    IPAddressSerializer,
    ServerSerializer,
    SiteLinkSerializer,
    StoragePoolSerializer,
    TagQuerySerializer,
    TagSerializer,
)
from sites.filtersets.catalog import (
    DataStoreFilterSet,
    FilesystemFilterSet,
    IPAddressFilterSet,
    ServerFilterSet,
    SiteLinkFilterSet,
    StoragePoolFilterSet,
    site_name_or_id,
)
from sites.models import (
    DataStore,
    Fileset,
    FileStatusType,
    Filesystem,
    IPAddress,
    Server,
    Site,
    SiteLink,
    StoragePool,
    Tag,
)

# /api/tags/ is for completion in a search box: more than this many matches is never useful.
TAGS_LIMIT = 200


# --- inventory -----------------------------------------------------------------------------------


class ServerViewSet(HubReadOnlyViewSet):
    """Servers of the sites the caller may view. ``?site=`` takes a site name or id."""

    queryset = Server.objects.select_related("site")
    serializer_class = ServerSerializer
    filterset_class = ServerFilterSet


class StoragePoolViewSet(HubReadOnlyViewSet):
    """Storage pools of the sites the caller may view; filter by ``?site=``, ``?filesystem=``
    (name or id) and ``?is_default=``."""

    queryset = StoragePool.objects.select_related("site", "filesystem")
    serializer_class = StoragePoolSerializer
    filterset_class = StoragePoolFilterSet


class FilesystemViewSet(HubReadOnlyViewSet):
    """Filesystems of the sites the caller may view. ``?site=`` takes a site name or id."""

    queryset = Filesystem.objects.select_related("site")
    serializer_class = FilesystemSerializer
    filterset_class = FilesystemFilterSet


class FilesetListView(APIView):
    """Retrieve list of filesets on a given site (a plain list, as in the reference).

    ``?site=`` is required (a name; an id works too). A site the caller may not view answers
    404 exactly like a site that does not exist.
    """

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[OpenApiParameter("site", str, required=True, description="Site name")],
        responses={200: FilesetSerializer(many=True)},
    )
    def get(self, request):
        query = FilesetQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        value = query.validated_data["site"]
        site = restrict(Site.objects.all(), request.user, VIEW).filter(site_name_or_id(value)).first()
        if site is None:
            raise NotFound(f"No site '{value}'.")
        filesets = (
            restrict(Fileset.objects.filter(site=site), request.user, VIEW)
            .select_related("filesystem")
            .order_by("filesystem__name", "name")
        )
        return Response(FilesetSerializer(filesets, many=True).data)


# --- data stores, IP addresses, site links -------------------------------------------------------


def _fingerprint(value: str) -> str:
    """A short keyed digest of a secret, so the audit trail shows *that* a credential changed
    without holding it (a plain hash of a short key could be brute-forced; a keyed one cannot)."""
    return hmac.new(settings.SECRET_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()[:10]


def _require_change_on(user: Any, parent: Any, model: type) -> None:
    """Moving a child to another parent needs the same right as creating it there."""
    if not (permissions.has_model_perm(user, model, "add") or permissions.has_object_perm(user, parent, CHANGE)):
        raise PermissionDenied("You do not have permission to move this here.")


class DataStoreViewSet(HubModelViewSet):
    """API endpoint for managing DataStores (credentials are write-only: answered masked).

    Writes need the model permissions (administrators). A data store still linked from a site
    cannot be deleted (409) so a link never disappears as a side effect; its IP addresses go
    with it.
    """

    queryset = DataStore.objects.all()
    serializer_class = DataStoreSerializer
    filterset_class = DataStoreFilterSet

    def representation(self, instance: DataStore) -> dict[str, Any]:
        data = super().representation(instance)
        for field in SECRET_FIELDS:
            secret = getattr(instance, field)
            if secret:
                data[field] = f"{MASK} {_fingerprint(field + ':' + secret)}"
        return data

    def destroy_instance(self, instance: DataStore) -> None:
        links = instance.sitelinks.count()
        if links:
            raise Conflict(f"Data store '{instance.name}' is linked from {links} site link(s); remove them first.")
        instance.delete()


class IPAddressViewSet(HubModelViewSet):
    """API endpoint for managing IP addresses. Whoever administers a data store manages its
    addresses; ``?datastore_id=`` filters."""

    queryset = IPAddress.objects.select_related("datastore")
    serializer_class = IPAddressSerializer
    filterset_class = IPAddressFilterSet

    def update_instance(self, serializer):
        datastore = serializer.validated_data.get("datastore")
        if datastore is not None and datastore.pk != serializer.instance.datastore_id:
            _require_change_on(self.request.user, datastore, IPAddress)
        return serializer.save()


class SiteLinkViewSet(HubModelViewSet):
    """API endpoint for managing sitelinks. Whoever administers a site manages its links, to a
    data store they may view; ``?site_id=`` and ``?datastore_id=`` filter."""

    queryset = SiteLink.objects.select_related("site", "datastore")
    serializer_class = SiteLinkSerializer
    filterset_class = SiteLinkFilterSet

    def _check_datastore_visible(self, datastore: DataStore) -> None:
        # Same answer as a name that does not exist: a hidden data store is never confirmed.
        if not permissions.has_object_perm(self.request.user, datastore, VIEW):
            raise serializers.ValidationError(
                {"datastore": [f"Object with name={datastore.name} does not exist."]}
            )

    def create_instance(self, serializer):
        self._check_datastore_visible(serializer.validated_data["datastore"])
        return serializer.save()

    def update_instance(self, serializer):
        site = serializer.validated_data.get("site")
        if site is not None and site.pk != serializer.instance.site_id:
            _require_change_on(self.request.user, site, SiteLink)
        datastore = serializer.validated_data.get("datastore")
        if datastore is not None and datastore.pk != serializer.instance.datastore_id:
            self._check_datastore_visible(datastore)
        return serializer.save()


# --- file status types and tags ------------------------------------------------------------------


class FileStatusTypeViewSet(HubListRetrieveUpdateViewSet):
    """API endpoint for managing file status types.

    The set is fixed (seeded by a migration, keys reported by agents), so there is no create or
    delete. Anyone signed in reads them; relabelling and recolouring need the change permission.
    """

    queryset = FileStatusType.objects.all()
    serializer_class = FileStatusTypeSerializer
    lookup_field = "key"
    lookup_value_regex = r"[^/]+"
    action_permissions = {"list": "authenticated", "retrieve": "authenticated"}

    def get_queryset(self):
        # Display metadata for every file listing: a hub-wide fact, not a per-object grant.
        return FileStatusType.objects.all()


class TagListView(APIView):
    """API endpoint for search tags: ``[{"name"}]`` for completion in the search form.

    ``?filter=`` keeps the tags containing the substring (case-insensitive). Tags starting with
    it come first, then the others, each alphabetically; at most ``TAGS_LIMIT`` (200) are
    returned, so type more to narrow.
    """

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[OpenApiParameter("filter", str, description="substring that returned tags must contain")],
        responses={200: TagSerializer(many=True)},
    )
    def get(self, request):
        query = TagQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        text = query.validated_data.get("filter", "")
        tags = Tag.objects.all()
        if text:
            tags = tags.filter(name__icontains=text).annotate(
                prefix=Case(When(name__istartswith=text, then=Value(True)), default=Value(False),
                            output_field=BooleanField())
            ).order_by("-prefix", "name")
        else:
            tags = tags.order_by("name")
        return Response(TagSerializer(tags[:TAGS_LIMIT], many=True).data)


# (prefix, viewset, basename) registered on the /api/ router by sites.api.urls.
routes: list = [
    ("servers", ServerViewSet, "server"),
    ("storagepools", StoragePoolViewSet, "storagepool"),
    ("filesystems", FilesystemViewSet, "filesystem"),
    ("datastores", DataStoreViewSet, "datastore"),
    ("ipaddresses", IPAddressViewSet, "ipaddress"),
    ("sitelinks", SiteLinkViewSet, "sitelink"),
    ("filestatustypes", FileStatusTypeViewSet, "filestatustype"),
]
# Extra paths (plain APIViews) under /api/.
urlpatterns: list = [
    path("filesets/", FilesetListView.as_view(), name="fileset-list"),
    path("tags/", TagListView.as_view(), name="tag-list"),
]
