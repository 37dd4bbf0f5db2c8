"""``/api/jobstats/``: each path of a job with its latest outcome, and every outcome it had."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from hub import permissions
from tests.workflows.factories import JobFactory, JobStatFactory, JobStatHistoryFactory, TaskFactory
from tests.workflows.factories import listed_ids as ids
from workflows.states import PathState

pytestmark = [pytest.mark.django_db]

LIST = reverse("jobstat-list")


@pytest.fixture
def stat(job):
    """A path premigrated by one task, then failed by the next (its history has both)."""
    first = TaskFactory(job=job, tasktype="migrate")
    second = TaskFactory(job=job, tasktype="reverse_stub", parents=[first])
    stat = JobStatFactory(job=job, path="/mmfs1/data/a.bin", task=second, state=PathState.FAILED, code="EIO",
                          message="remote object missing", size=4096)
    JobStatHistoryFactory(jobstat=stat, task=first, state=PathState.PROCESSED)
    JobStatHistoryFactory(jobstat=stat, task=second, state=PathState.FAILED, message="remote object missing")
    return stat


# --- visibility ----------------------------------------------------------------------------------

def test_anonymous_gets_401(anon, stat):
    assert anon.get(LIST).status_code == 401
    assert anon.get(reverse("jobstat-history", args=[stat.pk])).status_code == 401


def test_outsider_sees_no_path_and_gets_404(outsider, stat):
    assert ids(outsider.get(LIST)) == set()
    assert outsider.get(reverse("jobstat-detail", args=[stat.pk])).status_code == 404
    assert outsider.get(reverse("jobstat-history", args=[stat.pk])).status_code == 404


def test_member_granted_view_on_the_site_sees_the_paths_of_its_jobs(member, member_user, stat, site):
    JobStatFactory()  # another site's job
    permissions.grant("sites.view_site", member_user, site)
    assert ids(member.get(LIST)) == {stat.pk}


def test_owner_of_the_job_sees_its_paths(owner, stat):
    JobStatFactory(job=JobFactory(site=stat.job.site))
    assert ids(owner.get(LIST)) == {stat.pk}
    assert owner.get(reverse("jobstat-detail", args=[stat.pk])).status_code == 200


def test_jobstats_are_read_only(admin, stat):
    assert admin.post(LIST, {"path": "/x"}, format="json").status_code == 405
    assert admin.delete(reverse("jobstat-detail", args=[stat.pk])).status_code == 405


# --- representation ------------------------------------------------------------------------------

def test_rows_carry_the_reference_fields_and_the_size(admin, stat):
    row = admin.get(LIST).json()["results"][0]
    assert set(row) == {"code", "id", "job", "message", "path", "state", "task", "url", "size"}
    assert (row["path"], row["state"], row["code"], row["message"], row["size"]) == (
        "/mmfs1/data/a.bin", "failed", "EIO", "remote object missing", 4096)
    assert (row["job"], row["task"]) == (stat.job_id, stat.task_id)
    assert admin.get(reverse("jobstat-detail", args=[stat.pk])).json() == row


def test_history_lists_every_outcome_oldest_first(owner, stat):
    body = owner.get(reverse("jobstat-history", args=[stat.pk])).json()
    assert body["id"] == stat.pk and body["path"] == stat.path
    assert [(h["tasktype"], h["state"], h["message"]) for h in body["history"]] == [
        ("migrate", "processed", ""), ("reverse_stub", "failed", "remote object missing")]
    assert set(body["history"][0]) == {"id", "task", "tasktype", "state", "message", "created"}


def test_history_true_adds_the_history_to_each_row(admin, stat):
    row = admin.get(f"{LIST}?history=true").json()["results"][0]
    assert [h["state"] for h in row["history"]] == ["processed", "failed"]
    assert "history" not in admin.get(f"{LIST}?history=false").json()["results"][0]
    assert "history" not in admin.get(LIST).json()["results"][0]


# --- filters -------------------------------------------------------------------------------------

def test_filters_state_job_path_and_path_prefix(admin, stat, job):
    done = JobStatFactory(job=job, path="/mmfs1/data/b.bin", state=PathState.PROCESSED)
    skipped = JobStatFactory(job=job, path="/mmfs1/other/c.bin", state=PathState.SKIPPED)
    elsewhere = JobStatFactory(path="/mmfs1/data/a.bin", state=PathState.PROCESSED)
    assert ids(admin.get(f"{LIST}?state=failed&state=skipped")) == {stat.pk, skipped.pk}
    assert ids(admin.get(f"{LIST}?job={job.pk}")) == {stat.pk, done.pk, skipped.pk}
    assert ids(admin.get(f"{LIST}?path=/mmfs1/data/a.bin")) == {stat.pk, elsewhere.pk}
    assert ids(admin.get(f"{LIST}?path=/mmfs1/data/a.bin&job={job.pk}")) == {stat.pk}
    assert ids(admin.get(f"{LIST}?path=/mmfs1/data")) == set()
    assert ids(admin.get(f"{LIST}?path_prefix=/mmfs1/data/")) == {stat.pk, done.pk, elsewhere.pk}


@pytest.mark.parametrize(("param", "value"), [("state", "FAILURE"), ("job", "latest"), ("job", "2.5"),
                                              ("history", "please")])
def test_bad_filter_values_are_a_400_naming_the_parameter(admin, param, value):
    response = admin.get(f"{LIST}?{param}={value}")
    assert response.status_code == 400, response.content
    assert param in response.json()


def test_list_with_history_costs_the_same_queries_for_3_or_100_paths(member, member_user, site, job):
    permissions.grant("sites.view_site", member_user, site)
    task = TaskFactory(job=job)
    url = f"{LIST}?page_size=100&history=true"

    def make(n: int) -> None:
        for _ in range(n):
            stat = JobStatFactory(job=job, task=task)
            JobStatHistoryFactory(jobstat=stat)
            JobStatHistoryFactory(jobstat=stat)

    make(3)
    member.get(url)
    with CaptureQueriesContext(connection) as few:
        member.get(url)
    make(100)
    with CaptureQueriesContext(connection) as many:
        assert len(member.get(url).json()["results"]) == 100
    assert len(many.captured_queries) == len(few.captured_queries)
