"""Estate API views: spaces and their NFS / SMB shares.

``/spaces/`` is paginated like every collection; ``/shares/nfs/`` and ``/shares/smb/`` answer
plain JSON lists, as the reference shows them. Permissions come from ``hub.permissions``: a
space's viewers (directly or through its sites) see it and its shares; whoever may change the
space administers it and manages its shares.
"""

from __future__ import annotations

from django.db.models import Prefetch

from hub.api.viewsets import HubModelViewSet
from sites.api.serializers.shares import NfsShareSerializer, SmbShareSerializer
from sites.api.serializers.spaces import SpaceSerializer
from sites.filtersets.spaces import NfsShareFilterSet, SmbShareFilterSet, SpaceFilterSet
from sites.models import NfsShare, SmbShare, Space, SpaceSite
from sites.services import shares, spaces


class SpaceViewSet(HubModelViewSet):
    """Model View Set for filebrowser's Space model."""

    queryset = Space.objects.select_related("snapshot_schedule").prefetch_related(
        Prefetch("placements", queryset=SpaceSite.objects.select_related("site", "pool").order_by("site__name"))
    )
    serializer_class = SpaceSerializer
    filterset_class = SpaceFilterSet

    @property
    def space_links(self) -> spaces.SpaceLinks:
        if "_space_links" not in self.__dict__:
            self.__dict__["_space_links"] = spaces.SpaceLinks(self.request.user)
        return self.__dict__["_space_links"]

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["space_links"] = self.space_links
        return context

    def get_serializer(self, *args, **kwargs):
        # One batch of relationship queries per page (or per streamed chunk), none per row; a
        # single space is recomputed each time, so an update's answer shows its new state.
        if args and kwargs.get("many"):
            instances = list(args[0])
            self.space_links.prime(instances)
            args = (instances, *args[1:])
        elif args and isinstance(args[0], Space):
            self.space_links.prime([args[0]], refresh=True)
        return super().get_serializer(*args, **kwargs)

    def create_instance(self, serializer):
        space = spaces.create_space(self.request.user, **serializer.validated_data)
        # Read back with the list's prefetches, so the answer costs no query per placement.
        return self.queryset.get(pk=space.pk)

    def update_instance(self, serializer):
        data = dict(serializer.validated_data)
        data.pop("mountpoint", None)  # validated to be unchanged
        data.pop("immutable", None)  # validated to be unchanged
        return spaces.update_space(self.request.user, serializer.instance, **data)

    def destroy_instance(self, instance) -> None:
        spaces.delete_space(self.request.user, instance)


class NfsShareViewSet(HubModelViewSet):
    """NFS exports of spaces (a plain list, filtered by ``?space=``)."""

    queryset = NfsShare.objects.prefetch_related("clients")
    serializer_class = NfsShareSerializer
    filterset_class = NfsShareFilterSet
    pagination_class = None

    def create_instance(self, serializer):
        return shares.create_nfs_share(self.request.user, **serializer.validated_data)

    def update_instance(self, serializer):
        return shares.update_nfs_share(self.request.user, serializer.instance, **serializer.validated_data)

    def destroy_instance(self, instance) -> None:
        shares.delete_share(self.request.user, instance)


class SmbShareViewSet(HubModelViewSet):
    """SMB shares of spaces (a plain list, filtered by ``?space=``)."""

    queryset = SmbShare.objects.all()
    serializer_class = SmbShareSerializer
    filterset_class = SmbShareFilterSet
    pagination_class = None

    def create_instance(self, serializer):
        return shares.create_smb_share(self.request.user, **serializer.validated_data)

    def update_instance(self, serializer):
        return shares.update_smb_share(self.request.user, serializer.instance, **serializer.validated_data)

    def destroy_instance(self, instance) -> None:
        shares.delete_share(self.request.user, instance)


# (prefix, viewset, basename) registered on the /api/ router by sites.api.urls.
routes: list = [
    ("spaces", SpaceViewSet, "space"),
    ("shares/nfs", NfsShareViewSet, "nfsshare"),
    ("shares/smb", SmbShareViewSet, "smbshare"),
]
# Extra paths (plain APIViews) under /api/.
urlpatterns: list = []
