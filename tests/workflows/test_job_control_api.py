"""Job control through the API: pause, resume, cancel, resubmit and delete.

Who may: the job's owner, or whoever may change the job's site (administrators too); a caller
who only views the site gets 403, anyone else 404, and anonymous callers 401. The verbs answer
202 with the job (resubmit: with the new job) and call ``workflows.services``; a state that does
not allow the verb is a 409 that changes nothing.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from hub import permissions
from hub.models import AuditEvent
from tests.factories import NodeFactory, SiteFactory, SpaceFactory, client_key
from tests.workflows.factories import JobFactory, JobStatFactory, TaskFactory, WorkflowFactory
from workflows.models import Job
from workflows.states import JobState, LaunchedVia, PathState, TaskState

pytestmark = [pytest.mark.django_db]

VERBS = ("pause", "resume", "cancel", "resubmit")


def verb_url(job: Job, verb: str) -> str:
    return reverse(f"job-{verb}", args=[job.pk])


@pytest.fixture
def site(db):
    site = SiteFactory(name="lab")
    NodeFactory(site=site, last_heartbeat=timezone.now())
    return site


@pytest.fixture
def running(site, owner_user):
    """A started job whose one task is running on an agent."""
    job = JobFactory(site=site, owner=owner_user, state=JobState.STARTED, started=timezone.now(), tasks_total=2,
                     paths_total=2)
    TaskFactory(job=job, state=TaskState.STARTED, dispatched=timezone.now(), started=timezone.now())
    TaskFactory(job=job, state=TaskState.PENDING)
    return job


@pytest.fixture
def finished_with_failures(site, owner_user):
    """A finished job: one path processed, one failed."""
    job = JobFactory(site=site, owner=owner_user, state=JobState.HAS_FAILURES, discovery=None,
                     started=timezone.now(), completed=timezone.now(), paths=["/mmfs1/data/a", "/mmfs1/data/b"],
                     paths_total=2, paths_done=2, paths_processed=1, paths_failed=1, tasks_total=1, tasks_done=1)
    task = TaskFactory(job=job, state=TaskState.ERROR, completed=timezone.now())
    JobStatFactory(job=job, task=task, path="/mmfs1/data/a", state=PathState.PROCESSED, size=10)
    JobStatFactory(job=job, task=task, path="/mmfs1/data/b", state=PathState.FAILED, size=20, message="EIO")
    return job


# --- who may -------------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", VERBS)
def test_anonymous_gets_401_on_every_verb(anon, running, verb):
    assert anon.post(verb_url(running, verb)).status_code == 401


@pytest.mark.parametrize("verb", VERBS)
def test_outsider_gets_404_and_the_job_is_unchanged(outsider, running, verb):
    assert outsider.post(verb_url(running, verb)).status_code == 404
    assert outsider.delete(reverse("job-detail", args=[running.pk])).status_code == 404
    running.refresh_from_db()
    assert running.state == JobState.STARTED


@pytest.mark.parametrize("verb", VERBS)
def test_a_viewer_of_the_site_gets_403_and_the_job_is_unchanged(member, member_user, running, site, verb):
    permissions.grant("sites.view_site", member_user, site)
    assert member.get(reverse("job-detail", args=[running.pk])).status_code == 200
    assert member.post(verb_url(running, verb)).status_code == 403
    assert member.delete(reverse("job-detail", args=[running.pk])).status_code == 403
    running.refresh_from_db()
    assert running.state == JobState.STARTED


def test_whoever_may_change_the_site_may_control_its_jobs(member, member_user, running, site):
    for action in ("view", "change"):
        permissions.grant(f"sites.{action}_site", member_user, site)
    response = member.post(verb_url(running, "pause"))
    assert response.status_code == 202, response.content


def test_the_owner_may_control_their_job_without_any_grant(owner, running):
    response = owner.post(verb_url(running, "pause"))
    assert response.status_code == 202, response.content


def test_a_verb_is_audited_with_its_name(owner, running):
    owner.post(verb_url(running, "cancel"))
    event = AuditEvent.objects.get(action="action", verb="cancel")
    assert event.object_pk == str(running.pk) and event.username == "owner-persona"


# --- pause and resume ----------------------------------------------------------------------------

def test_pause_of_a_running_job_answers_202_and_pausing_while_a_task_runs(owner, running):
    response = owner.post(verb_url(running, "pause"))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"] == running.pk and "counts" in body
    assert body["state"] in (JobState.PAUSING, JobState.PAUSED)
    running.refresh_from_db()
    assert running.state == body["state"]
    assert running.paused_by is not None


def test_pause_of_a_finished_job_is_a_409(owner, finished_with_failures):
    response = owner.post(verb_url(finished_with_failures, "pause"))
    assert response.status_code == 409
    finished_with_failures.refresh_from_db()
    assert finished_with_failures.state == JobState.HAS_FAILURES


def test_resume_of_a_paused_job_goes_back_to_started(owner, running):
    Job.objects.filter(pk=running.pk).update(state=JobState.PAUSED)
    response = owner.post(verb_url(running, "resume"))
    assert response.status_code == 202, response.content
    assert response.json()["state"] == JobState.STARTED
    running.refresh_from_db()
    assert running.state == JobState.STARTED


def test_resume_of_a_job_that_is_not_paused_is_a_409(owner, running):
    assert owner.post(verb_url(running, "resume")).status_code == 409
    running.refresh_from_db()
    assert running.state == JobState.STARTED


# --- cancel --------------------------------------------------------------------------------------

def test_cancel_of_a_running_job_answers_202_and_a_cancel_state(owner, running):
    response = owner.post(verb_url(running, "cancel"))
    assert response.status_code == 202, response.content
    assert response.json()["state"] in (JobState.CANCELLING, JobState.DEQUEUING, JobState.CANCELLED)
    running.refresh_from_db()
    assert running.state in (JobState.CANCELLING, JobState.DEQUEUING, JobState.CANCELLED)
    assert running.cancelled_by is not None


def test_cancel_of_a_job_with_nothing_sent_ends_cancelled(owner, site, owner_user):
    job = JobFactory(site=site, owner=owner_user, state=JobState.PENDING, tasks_total=1)
    TaskFactory(job=job, state=TaskState.PENDING)
    response = owner.post(verb_url(job, "cancel"))
    assert response.status_code == 202, response.content
    assert response.json()["state"] == JobState.CANCELLED


def test_cancel_of_a_finished_job_is_a_409(owner, finished_with_failures):
    assert owner.post(verb_url(finished_with_failures, "cancel")).status_code == 409


# --- resubmit ------------------------------------------------------------------------------------

def test_resubmit_of_a_finished_job_with_failed_paths_answers_a_new_linked_job(owner, owner_user,
                                                                               finished_with_failures):
    response = owner.post(verb_url(finished_with_failures, "resubmit"))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"] != finished_with_failures.pk
    assert body["resubmitted_from"] == finished_with_failures.pk
    assert body["launched_via"] == LaunchedVia.RESUBMIT
    assert body["paths"] == ["/mmfs1/data/b"]
    new = Job.objects.get(pk=body["id"])
    assert new.owner == owner_user and new.workflow_name == finished_with_failures.workflow_name


def test_resubmit_with_a_client_key_records_the_key(owner_user, finished_with_failures):
    key, raw = client_key(owner_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    response = client.post(verb_url(finished_with_failures, "resubmit"))
    assert response.status_code == 202, response.content
    assert response.json()["clientkey"] == key.pk


def test_resubmit_of_an_unfinished_job_has_no_effect(owner, running):
    before = Job.objects.count()
    response = owner.post(verb_url(running, "resubmit"))
    assert response.status_code == 200, response.content
    assert "not finished" in response.json()["detail"]
    assert Job.objects.count() == before
    running.refresh_from_db()
    assert running.state == JobState.STARTED


# --- delete --------------------------------------------------------------------------------------

def test_delete_of_a_finished_job_removes_it_with_its_tasks_and_paths(owner, finished_with_failures):
    response = owner.delete(reverse("job-detail", args=[finished_with_failures.pk]))
    assert response.status_code == 204, response.content
    assert not Job.objects.filter(pk=finished_with_failures.pk).exists()
    assert AuditEvent.objects.filter(action="delete", model="workflows.job").exists()


def test_delete_of_an_unfinished_job_is_a_409_and_keeps_it(owner, running):
    response = owner.delete(reverse("job-detail", args=[running.pk]))
    assert response.status_code == 409
    assert Job.objects.filter(pk=running.pk).exists()


def test_jobs_cannot_be_patched(admin, running):
    response = admin.patch(reverse("job-detail", args=[running.pk]), {"state": "SUCCESS"}, format="json")
    assert response.status_code == 405


# --- launch --------------------------------------------------------------------------------------

def test_post_to_jobs_launches_the_workflow_as_an_api_launch(admin, admin_user, site):
    space = SpaceFactory(sites=[site])
    workflow = WorkflowFactory()
    response = admin.post(reverse("job-list"), {"site": "lab", "workflow": workflow.name,
                                                "paths": [f"{space.mountpoint}/projects"]}, format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.launched_via, job.owner, job.workflow_name) == (LaunchedVia.API, admin_user, workflow.name)
    assert reverse("job-detail", args=[job.pk]) in response.json()["url"]


def test_post_to_jobs_with_a_bad_body_is_a_400_and_creates_nothing(admin, site):
    response = admin.post(reverse("job-list"), {"site": "lab", "workflow": "no-such-workflow", "paths": ["/x"]},
                          format="json")
    assert response.status_code == 400
    assert not Job.objects.exists()


def test_anonymous_may_not_launch(anon, site):
    assert anon.post(reverse("job-list"), {}, format="json").status_code == 401
