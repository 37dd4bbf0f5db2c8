"""Site health from heartbeats, and /api/health/: hub checks plus every visible site, worst wins."""

from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from hub import configuration, permissions
from sites.services import nodes as node_service
from tests.factories import NodeFactory, SiteFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def health(client, site):
    response = client.get(reverse("site-health", args=[site.pk]))
    assert response.status_code == 200, response.content
    return response.json()


# --- /sites/{id}/health/ ----------------------------------------------------------------------

def test_every_node_online_is_ok(admin):
    site = SiteFactory()
    NodeFactory(site=site, last_heartbeat=ago(5))
    NodeFactory(site=site, last_heartbeat=ago(100))
    body = health(admin, site)
    assert body["status"] == "ok" and body["online_nodes"] == 2 and body["total_nodes"] == 2
    assert body["reason"] == "All nodes are online."


def test_some_nodes_offline_is_a_warning_naming_how_many(admin):
    site = SiteFactory()
    NodeFactory(site=site, last_heartbeat=ago(5))
    NodeFactory(site=site, last_heartbeat=ago(121))
    NodeFactory(site=site, last_heartbeat=None)
    body = health(admin, site)
    assert body["status"] == "warning" and "2 of 3" in body["reason"]


def test_every_node_offline_is_critical(admin):
    site = SiteFactory()
    NodeFactory(site=site, last_heartbeat=ago(3600))
    assert health(admin, site)["status"] == "critical"


def test_a_site_with_no_node_is_critical(admin):
    body = health(admin, SiteFactory())
    assert body["status"] == "critical" and body["total_nodes"] == 0 and body["nodes"] == []
    assert "No agent node" in body["reason"]


def test_health_carries_the_site_fields_and_per_node_detail(admin):
    site = SiteFactory(name="lab")
    NodeFactory(site=site, name="nsd1", last_heartbeat=ago(30), queues=["default", "transfer"])
    NodeFactory(site=site, name="nsd2", last_heartbeat=None)
    body = health(admin, site)
    assert body["name"] == "lab" and body["id"] == site.pk and "spaces" in body and "editable" in body
    first, second = body["nodes"]
    assert first["name"] == "nsd1" and first["online"] is True and first["queues"] == ["default", "transfer"]
    assert 29 <= first["seconds_since_heartbeat"] < 60
    assert second == {**second, "name": "nsd2", "online": False, "last_heartbeat": None,
                      "seconds_since_heartbeat": None}


def test_health_follows_the_configured_interval(admin):
    site = SiteFactory()
    NodeFactory(site=site, last_heartbeat=ago(300))
    assert health(admin, site)["status"] == "critical"
    configuration.update({"node_health_last_heartbeat_interval": 600})
    assert health(admin, site)["status"] == "ok"


def test_site_health_needs_view_on_the_site(member, member_user, outsider, anon):
    site = SiteFactory()
    url = reverse("site-health", args=[site.pk])
    assert anon.get(url).status_code == 401
    assert outsider.get(url).status_code == 404
    permissions.grant("sites.view_site", member_user, site)
    assert member.get(url).status_code == 200


# --- /api/health/ -----------------------------------------------------------------------------

def test_hub_health_checks_the_database_and_broker_and_lists_visible_sites(member, member_user):
    good, bad, hidden = SiteFactory(name="good"), SiteFactory(name="bad"), SiteFactory(name="hidden")
    NodeFactory(site=good, last_heartbeat=ago(5))
    NodeFactory(site=bad, last_heartbeat=ago(5))
    NodeFactory(site=bad, last_heartbeat=ago(3600))
    for site in (good, bad):
        permissions.grant("sites.view_site", member_user, site)
    response = member.get(reverse("health"))
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["broker"]["status"] == "ok"
    rows = {row["name"]: row for row in body["sites"]}
    assert set(rows) == {"good", "bad"}
    assert rows["good"]["status"] == "ok" and rows["bad"]["status"] == "warning"
    assert rows["bad"]["url"].endswith(reverse("site-detail", args=[bad.pk])) and len(rows["bad"]["nodes"]) == 2
    assert body["status"] == "warning"
    assert hidden.pk not in {row["id"] for row in body["sites"]}


def test_overall_status_is_the_worst_site(admin):
    ok = SiteFactory()
    NodeFactory(site=ok, last_heartbeat=ago(5))
    assert admin.get(reverse("health")).json()["status"] == "ok"
    SiteFactory()  # no node: critical
    assert admin.get(reverse("health")).json()["status"] == "critical"


def test_a_caller_who_sees_no_site_gets_the_hub_checks_only(outsider):
    SiteFactory()
    body = outsider.get(reverse("health")).json()
    assert body["sites"] == [] and body["status"] == "ok"


def test_hub_health_needs_a_signed_in_user(anon):
    assert anon.get(reverse("health")).status_code == 401


def test_an_unreachable_broker_is_critical(admin):
    with mock.patch("hub.celery.app.connection_for_write", side_effect=OSError("connection refused")):
        body = admin.get(reverse("health")).json()
    assert body["checks"]["broker"]["status"] == "critical"
    assert "connection refused" in body["checks"]["broker"]["detail"]
    assert body["status"] == "critical"


def test_a_hanging_broker_is_given_up_on_within_the_timeout():
    def hang(*args, **kwargs):
        time.sleep(5)

    with mock.patch("hub.celery.app.connection_for_write", side_effect=hang):
        started = time.monotonic()
        result = node_service.check_broker(timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert result["status"] == "critical" and "0.3" in result["detail"]


def test_the_default_broker_timeout_is_short():
    assert node_service.BROKER_CHECK_TIMEOUT <= 2


def test_a_failing_database_check_is_critical():
    with mock.patch.object(node_service.connection, "cursor", side_effect=RuntimeError("db down")):
        result = node_service.check_database()
    assert result["status"] == "critical" and "db down" in result["detail"]


def test_worst_orders_the_statuses():
    assert node_service.worst([]) == "ok"
    assert node_service.worst(["ok", "warning"]) == "warning"
    assert node_service.worst(["warning", "critical", "ok"]) == "critical"
