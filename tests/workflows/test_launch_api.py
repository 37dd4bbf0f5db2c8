"""Launching a workflow through the API: everything is validated before anything is written, the
answer is 202 with the job, and the launcher is recorded."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from hub import permissions
from hub.models import ClientKey
from tests.conftest import api_client
from tests.factories import ExternalTargetFactory, NodeFactory, SiteFactory, SpaceFactory, UserFactory
from workflows.definitions import ensure_builtin_workflows
from workflows.models import Job, JobStat, Task, Workflow
from workflows.states import JobState, LaunchedVia, PathState

pytestmark = pytest.mark.django_db

URL = "/api/file/workflow/"


@pytest.fixture
def estate(db):
    ensure_builtin_workflows()
    site = SiteFactory(name="alpha")
    space = SpaceFactory(name="projects", mountpoint="/mmfs1/projects", sites=[site])
    ExternalTargetFactory(name="archive", space=space, available_on_sites=[site])
    return site, space


def body(**extra):
    return {"site": "alpha", "workflow": "migrate", "paths": ["/mmfs1/projects/a", {"path": "/mmfs1/projects/b"}],
            **extra}


def test_launch_answers_202_with_the_job_and_records_who_asked(admin, admin_user, estate):
    response = admin.post(URL, body(), format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert response.json()["id"] == job.pk
    assert job.owner == admin_user and job.clientkey is None and job.launched_via == LaunchedVia.API
    assert job.workflow_name == "migrate" and job.definition["discovery"] == "recursive"
    assert job.paths == ["/mmfs1/projects/a", "/mmfs1/projects/b"]
    assert job.fields == {"lock_level": "partial"}  # the field's default
    # Recursive discovery: one discovery task over both paths, waiting for a live node.
    task = Task.objects.get(job=job)
    assert task.internal and task.tasktype == "recursive_navigate"
    assert job.state == JobState.PENDING


def test_jobs_post_is_the_same_launch(admin, estate):
    response = admin.post("/api/jobs/", body(workflow="recall"), format="json")
    assert response.status_code == 202, response.content
    assert Job.objects.get().workflow_name == "recall"


def test_a_client_key_launch_records_the_key(admin_key_client, estate):
    response = admin_key_client.post(URL, body(), format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.clientkey == ClientKey.objects.get() and job.owner == job.clientkey.user


def test_a_job_without_a_live_node_says_what_it_waits_for(admin, estate):
    response = admin.post(URL, body(discovery=None), format="json")
    assert response.status_code == 202
    job = Job.objects.get()
    assert job.state == JobState.PENDING
    assert "no live node serves queue 'default' of site 'alpha'" in job.state_reason


def test_with_a_live_node_the_first_tasks_are_dispatched(admin, estate):
    site, _ = estate
    node = NodeFactory(site=site, name="n1", last_heartbeat=timezone.now())
    node.queues.add(*site.queues.all())
    response = admin.post(URL, body(discovery=None), format="json")
    assert response.status_code == 202
    job = Job.objects.get()
    assert job.state_reason == ""
    task = Task.objects.get(job=job)
    assert task.dispatched is not None and task.tasktype == "migrate"
    assert task.kwargs["target"].endswith("-archive")
    assert set(JobStat.objects.filter(job=job).values_list("state", flat=True)) == {PathState.PENDING}


@pytest.mark.parametrize("change, field", [
    ({"workflow": "no-such"}, "workflow"),
    ({"site": "no-such"}, "site"),
    ({"paths": []}, "paths"),
    ({"paths": ["relative/path"]}, "paths"),
    ({"paths": ["/mmfs1/projects/../../etc"]}, "paths"),
    ({"paths": ["/etc/passwd"]}, "paths"),
    ({"paths": [{"nopath": 1}]}, "paths"),
    ({"paths": ["/mmfs1/projects/\u0000"]}, "paths"),
    ({"fields": {"lock_level": "bogus"}}, "fields"),
    ({"fields": {"unknown_field": 1}}, "fields"),
    ({"queue": "no-such"}, "queue"),
    ({"queue": "bad queue!"}, "queue"),
    ({"discovery": "snapdiff"}, "discovery"),
    ({"discovery": "weird"}, "discovery"),
    ({"job": 999}, "job"),
    ({"include": "not-a-list"}, "include"),
])
def test_bad_launches_are_400_naming_the_field_and_write_nothing(admin, estate, change, field):
    response = admin.post(URL, body(**change), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Job.objects.exists() and not Task.objects.exists()


def test_site_sync_is_refused_until_snapdiff_exists(admin, estate):
    response = admin.post(URL, body(workflow="site_sync", fields={"destinationsite": "alpha"}), format="json")
    assert response.status_code == 400
    assert "snapshot" in json.dumps(response.json()).lower()


def test_a_disabled_or_schedule_only_workflow_is_refused(admin, estate):
    Workflow.objects.filter(name="migrate").update(enabled=False)
    Workflow.objects.filter(name="recall").update(schedule_only=True)
    assert admin.post(URL, body(), format="json").status_code == 400
    assert admin.post(URL, body(workflow="recall"), format="json").status_code == 400
    assert not Job.objects.exists()


@pytest.mark.parametrize("raw", ["[]", "0", "null", '"x"', "{}", json.dumps({"site": {"$gt": ""}}),
                                 json.dumps({"site": "alpha", "workflow": "migrate", "paths": [None]}),
                                 json.dumps({"site": "alpha", "workflow": "migrate", "paths": "/x"}),
                                 json.dumps({"site": "alpha", "workflow": "migrate", "paths": ["/x"],
                                             "fields": [1]}),
                                 json.dumps({"site": "a" * 100_000, "workflow": "migrate", "paths": ["/x"]}),
                                 json.dumps({"site": "alpha", "workflow": "migrate", "paths": ["/x"], "job": 2**80})])
def test_hostile_bodies_are_400_never_500(admin, estate, raw):
    response = admin.generic("POST", URL, raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert not Job.objects.exists()


def test_anonymous_is_401(anon, estate):
    assert anon.post(URL, body(), format="json").status_code == 401


def test_an_outsider_cannot_launch_on_a_site_it_cannot_see(outsider, estate):
    response = outsider.post(URL, body(), format="json")
    assert response.status_code == 400 and "site" in response.json()
    assert not Job.objects.exists()


def test_a_viewer_of_a_space_may_not_run_workflows_in_it_but_its_administrator_may(estate):
    site, space = estate
    viewer, admin_of_space = UserFactory(username="viewer"), UserFactory(username="space-admin")
    for user in (viewer, admin_of_space):
        permissions.grant("sites.view_site", user, site)
    permissions.grant("sites.view_space", viewer, space)
    permissions.grant("sites.change_space", admin_of_space, space)

    refused = api_client(viewer).post(URL, body(), format="json")
    assert refused.status_code == 400 and "may not run workflows" in json.dumps(refused.json())
    accepted = api_client(admin_of_space).post(URL, body(), format="json")
    assert accepted.status_code == 202
    assert Job.objects.get().owner == admin_of_space


def test_paths_can_be_added_to_a_running_job_of_the_same_workflow(admin, estate):
    first = admin.post(URL, body(discovery=None), format="json").json()["id"]
    response = admin.post(URL, body(discovery=None, job=first, paths=["/mmfs1/projects/c", "/mmfs1/projects/a"]),
                          format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.pk == first
    # "a" was already in the job: only "c" is new.
    assert sorted(JobStat.objects.filter(job=job).values_list("path", flat=True)) == [
        "/mmfs1/projects/a", "/mmfs1/projects/b", "/mmfs1/projects/c"]
    other = admin.post(URL, body(workflow="recall", job=first), format="json")
    assert other.status_code == 400 and "job" in other.json()
