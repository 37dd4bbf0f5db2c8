"""The site agent key: per site, encrypted at rest, admin-only, and sealing credentials in orders."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from hub.celery import app
from hub.models import AuditEvent
from sites.models import SettingsTask
from tests.factories import BucketFactory, ExternalTargetFactory, SiteFactory, SpaceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def key_url(site) -> str:
    return reverse("site-agent-key", args=[site.pk])


def test_every_site_has_its_own_key_stored_encrypted():
    first, second = SiteFactory(), SiteFactory()
    assert first.agent_key != second.agent_key
    Fernet(first.agent_key.encode())  # a valid Fernet key
    with connection.cursor() as cursor:
        cursor.execute("SELECT agent_key FROM sites_site WHERE id = %s", [first.pk])
        assert first.agent_key not in cursor.fetchone()[0]


def test_only_administrators_read_the_key_and_it_is_audited(admin, member, member_user, anon):
    from hub import permissions

    site = SiteFactory()
    permissions.grant("sites.change_site", member_user, site)
    permissions.grant("sites.view_site", member_user, site)
    assert anon.post(key_url(site)).status_code == 401
    assert member.post(key_url(site)).status_code == 403
    response = admin.post(key_url(site), {}, format="json")
    assert response.status_code == 200
    assert response.json() == {"site": site.name, "agent_key": site.agent_key}
    event = AuditEvent.objects.get(verb="agent_key")
    assert site.agent_key not in json.dumps(event.changes)


def take_order(queue: str, task_id: str) -> tuple[dict, str]:
    """The order published for ``task_id`` on the configured broker (filesystem or Redis), and
    the raw message text (to prove what travelled). Other messages on the queue are dropped."""
    with app.connection_for_read() as connection_, connection_.SimpleQueue(queue) as simple:
        for _ in range(50):
            try:
                message = simple.get(timeout=0.2)
            except simple.Empty:
                break
            message.ack()
            if message.headers.get("id") == task_id:
                _args, kwargs, _embed = message.decode()
                return kwargs["order"], message.body if isinstance(message.body, str) else repr(message.body)
    pytest.fail(f"no order {task_id} on queue {queue}")


def test_rotation_makes_a_new_key_and_resends_targets_sealed_with_it(admin, django_capture_on_commit_callbacks):
    site = SiteFactory(name=f"keyrot-{uuid.uuid4().hex[:8]}")
    target = ExternalTargetFactory(space=SpaceFactory(sites=[site]), available_on_sites=[site],
                                   bucket=BucketFactory(secret_access_key="rotate-me-secret"))
    old = site.agent_key
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(key_url(site), {"rotate": True}, format="json")
    assert response.status_code == 200
    new = response.json()["agent_key"]
    assert new != old
    task = SettingsTask.objects.get(tasktype="configure_target", site=site)
    assert task.state == SettingsTask.State.PENDING  # published, not failed
    assert "credentials" not in task.request and "rotate-me-secret" not in json.dumps(task.request)
    message, raw = take_order(site.name, str(task.task_id))
    assert "rotate-me-secret" not in raw
    sealed = json.loads(Fernet(new.encode()).decrypt(message["credentials"].encode()))
    assert sealed["secret_access_key"] == "rotate-me-secret"
    assert message["endpoint_name"] == target.endpoint_name


def test_management_command_prints_the_key():
    site = SiteFactory(name="keyed")
    out = io.StringIO()
    call_command("agent_key", "keyed", stdout=out)
    assert out.getvalue().strip() == site.agent_key
