"""Sites, their agent nodes and queues, site settings, site tasks and the hub's health.

* ``/sites/``: CRUD through ``sites.services.sites`` (creation adds the default queue and
  settings; a site with agent nodes keeps its name; deletion is refused while in use), plus
  ``health``, ``refresh`` (inventory), ``settings`` and ``settings/refresh``.
* ``/nodes/``: written by heartbeats only; users may read them and delete one that went silent.
* ``/queues/`` and ``/settingstasks/``: read-only.
* ``/health/``: the hub's dependencies and every visible site's health, for dashboards and
  monitoring.

Visibility follows ``hub.permissions``: nodes, queues, settings and site tasks are covered by a
permission on their site.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.db.models import Prefetch
from django.urls import path, reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from hub import audit
from hub.api.viewsets import HubModelViewSet, HubReadOnlyViewSet, HubViewSetMixin, accepted
from hub.permissions import CHANGE, VIEW, restrict
from sites.api.serializers.sites import (
    AgentKeyRequestSerializer,
    AgentKeySerializer,
    FlatQuerySerializer,
    HealthSerializer,
    NodeSerializer,
    QueueSerializer,
    SettingsRefreshAcceptedSerializer,
    SettingsTaskSerializer,
    SiteHealthSerializer,
    SiteSerializer,
    SiteSettingsAcceptedSerializer,
    SiteSettingSerializer,
    SiteSettingsPatchSerializer,
    TaskAcceptedSerializer,
)
from sites.filtersets.sites import NodeFilterSet, QueueFilterSet, SettingsTaskFilterSet, SiteFilterSet
from sites.models import DEFAULT_QUEUE, Node, Queue, SettingsTask, Site, Space, heartbeat_cutoff
from sites.services import nodes as node_service
from sites.services import sites as site_service


def task_accepted(request, task: SettingsTask, **extra: Any) -> Response:
    """202 naming the site task and where to follow it, and saying whether an agent will pick it up.

    An order for a site whose agents are all offline waits in the broker until one starts; the
    caller is told so rather than left watching a PENDING task.
    """
    url = request.build_absolute_uri(reverse("settingstask-detail", args=[task.pk]))
    agent_online = DEFAULT_QUEUE in node_service.live_queues(task.site)
    body = {"id": task.pk, "task_id": str(task.task_id), "url": url, "agent_online": agent_online, **extra}
    if not agent_online:
        body["detail"] = (f"No agent node of site '{task.site.name}' is online: the order waits in its queue "
                          f"and runs when an agent starts.")
    return accepted(body)


class HeartbeatCutoffMixin:
    """Decide ``online`` against one cutoff per request, not one configuration read per row."""

    @cached_property
    def heartbeat_cutoff(self):
        return heartbeat_cutoff()

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["heartbeat_cutoff"] = self.heartbeat_cutoff
        return context


class SiteViewSet(HubModelViewSet):
    """API endpoint for managing sites."""

    queryset = Site.objects.prefetch_related(
        Prefetch("spaces", queryset=Space.objects.only("id", "name").order_by("name"))
    ).order_by("name")
    serializer_class = SiteSerializer
    filterset_class = SiteFilterSet
    # GET settings needs view and PATCH settings change (from the method); the POST verbs send
    # work to the site's agent, which is administering the site.
    action_permissions = {"refresh": CHANGE, "settings_refresh": CHANGE, "health": VIEW, "agent_key": "admin"}

    def create_instance(self, serializer):
        return site_service.create_site(self.request.user, **serializer.validated_data)

    def update_instance(self, serializer):
        return site_service.update_site(self.request.user, serializer.instance, **serializer.validated_data)

    def destroy_instance(self, instance) -> None:
        site_service.delete_site(self.request.user, instance)

    @extend_schema(responses={200: SiteHealthSerializer})
    @action(detail=True, methods=["get"])
    def health(self, request, pk=None):
        """The site and its health: ``ok`` (every node online), ``warning`` (some), ``critical`` (none)."""
        site = self.get_object()
        return Response({**self.get_serializer(site).data, **node_service.site_health(site)})

    @extend_schema(request=AgentKeyRequestSerializer, responses={200: AgentKeySerializer})
    @action(detail=True, methods=["post"], url_path="agent_key", url_name="agent-key")
    def agent_key(self, request, pk=None):
        """The site's agent key, for installing its agents (administrators only; audited).

        ``{"rotate": true}`` makes a new key and re-sends every target configured on the site
        sealed with it; agents keep working only once they are given the new key.
        """
        site = self.get_object()
        body = AgentKeyRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if body.validated_data["rotate"]:
            site = site_service.rotate_agent_key(request.user, site)
        self.audit_changes = {"rotated": body.validated_data["rotate"]}
        return Response({"site": site.name, "agent_key": site.agent_key})

    @extend_schema(request=None, responses={202: TaskAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        """Ask the site's agent for a fresh inventory (filesystems, pools, counts)."""
        site = self.get_object()
        task = site_service.request_inventory(request.user, site)
        self.audit_changes = {"task_id": str(task.task_id)}
        return task_accepted(request, task)

    @extend_schema(
        methods=["GET"],
        parameters=[OpenApiParameter("flat", bool, description="Return flat dict {key: value}")],
        responses={200: SiteSettingSerializer(many=True)},
    )
    @extend_schema(methods=["PATCH"], request=SiteSettingsPatchSerializer,
                   responses={202: SiteSettingsAcceptedSerializer})
    @action(detail=True, methods=["get", "patch"], url_path="settings", url_name="settings")
    def site_settings(self, request, pk=None):
        """GET: the site's own settings. PATCH: set keys (``null`` deletes one) and push to the agent.

        (Not named ``settings``: DRF views read their configuration from ``self.settings``.)
        """
        site = self.get_object()
        if request.method == "GET":
            query = FlatQuerySerializer(data=request.query_params)
            query.is_valid(raise_exception=True)
            rows = site.settings.order_by("key")
            if query.validated_data["flat"]:
                return Response({row.key: row.value for row in rows})
            return Response(SiteSettingSerializer(rows, many=True).data)
        serializer = SiteSettingsPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task, changes = site_service.apply_site_settings(request.user, site, serializer.validated_data["values"])
        self.audit_changes = changes
        return task_accepted(request, task, changes=audit.redact(changes))

    @extend_schema(request=None, responses={202: SettingsRefreshAcceptedSerializer})
    @action(detail=True, methods=["post"], url_path="settings/refresh", url_name="settings-refresh")
    def settings_refresh(self, request, pk=None):
        """Create any missing default settings and ask the agent to report what it has applied."""
        site = self.get_object()
        task, created = site_service.refresh_site_settings(request.user, site)
        self.audit_changes = {"created": created, "task_id": str(task.task_id)}
        return task_accepted(request, task, created=created)


class NodeViewSet(
    HeartbeatCutoffMixin, HubViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet,
):
    """Agent nodes. Created and kept up to date by their heartbeats; there is nothing to create.

    PATCH is offered as the reference lists it, but every field is reported by the node itself
    (a renamed node would come back under its hostname with the next heartbeat), so writes are
    refused with the reason. DELETE forgets a node that has gone silent; an online node is 409.
    """

    http_method_names = ["get", "patch", "delete", "head", "options"]
    queryset = Node.objects.select_related("site").prefetch_related(
        Prefetch("queues", queryset=Queue.objects.only("id", "name"))
    ).order_by("site__name", "name")
    serializer_class = NodeSerializer
    filterset_class = NodeFilterSet

    def update_instance(self, serializer):
        # Nothing is writable (the serializer refuses every field), and saving the row would
        # write back the last_heartbeat read at the start of the request over a newer one.
        return serializer.instance

    def destroy_instance(self, instance) -> None:
        node_service.delete_node(self.request.user, instance)


class QueueViewSet(HeartbeatCutoffMixin, HubReadOnlyViewSet):
    """A site's queues and the nodes consuming them (both reported by heartbeats)."""

    queryset = Queue.objects.select_related("site").prefetch_related(
        Prefetch("nodes", queryset=Node.objects.only("id", "name", "last_heartbeat"))
    ).order_by("site__name", "name")
    serializer_class = QueueSerializer
    filterset_class = QueueFilterSet


class SettingsTaskViewSet(HubReadOnlyViewSet):
    """API endpoint for viewing tasks sent to sites' agents (settings, inventory, spaces, targets)."""

    queryset = SettingsTask.objects.select_related("site", "created_by").order_by("-created", "-id")
    serializer_class = SettingsTaskSerializer
    filterset_class = SettingsTaskFilterSet


class HealthView(APIView):
    """The hub's dependencies (database, broker) and the health of every site the caller may view.

    ``status`` is the worst of all of them. The answer is 200 whatever the status (the body says
    it), so a load balancer probing the hub is not told the hub is down because a site is.
    """

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: HealthSerializer})
    def get(self, request):
        sites = list(restrict(Site.objects.order_by("name"), request.user, VIEW))
        health = node_service.overall_health(sites)
        rows = []
        for row in health["sites"]:
            site = row.pop("site")
            url = request.build_absolute_uri(reverse("site-detail", args=[site.pk]))
            rows.append({"id": site.pk, "name": site.name, "label": site.label, "url": url, **row})
        return Response({**health, "sites": rows})


# (prefix, viewset, basename) registered on the /api/ router by sites.api.urls.
routes: list = [
    ("sites", SiteViewSet, "site"),
    ("nodes", NodeViewSet, "node"),
    ("queues", QueueViewSet, "queue"),
    ("settingstasks", SettingsTaskViewSet, "settingstask"),
]
# Extra paths (plain APIViews) under /api/.
urlpatterns: list = [path("health/", HealthView.as_view(), name="health")]
