"""``/api/tasks/``: a job's DAG tasks, seen through the job, and the paths each task reported."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hub import permissions
from tests.workflows.factories import JobFactory, JobStatFactory, JobStatHistoryFactory, TaskFactory
from tests.workflows.factories import listed_ids as ids
from workflows.states import PathState, TaskState

pytestmark = [pytest.mark.django_db]

LIST = reverse("task-list")


@pytest.fixture
def chain(job):
    """A discovery task and a two-step chain (premigrate on lab, reverse stub after it)."""
    discovery = TaskFactory(job=job, tasktype="recursive_navigate", internal=True, state=TaskState.SUCCESS)
    first = TaskFactory(job=job, tasktype="migrate", state=TaskState.ERROR, dynamic_parents=[discovery.pk])
    second = TaskFactory(job=job, tasktype="reverse_stub", parents=[first], dynamic_parents=[discovery.pk])
    return discovery, first, second


# --- visibility ----------------------------------------------------------------------------------

def test_anonymous_gets_401(anon, chain):
    assert anon.get(LIST).status_code == 401
    assert anon.get(reverse("task-detail", args=[chain[0].pk])).status_code == 401


def test_outsider_sees_no_task_and_gets_404(outsider, chain):
    assert ids(outsider.get(LIST)) == set()
    assert outsider.get(reverse("task-detail", args=[chain[1].pk])).status_code == 404
    assert outsider.get(reverse("task-files", args=[chain[1].pk])).status_code == 404


def test_member_granted_view_on_the_site_sees_the_tasks_of_its_jobs(member, member_user, chain, site):
    TaskFactory()  # another site's job
    permissions.grant("sites.view_site", member_user, site)
    assert ids(member.get(LIST)) == {task.pk for task in chain}
    assert member.get(reverse("task-detail", args=[chain[2].pk])).status_code == 200


def test_owner_of_the_job_sees_its_tasks(owner, chain):
    TaskFactory(job=JobFactory(site=chain[0].job.site))
    assert ids(owner.get(LIST)) == {task.pk for task in chain}


def test_tasks_are_read_only(admin, chain):
    assert admin.post(LIST, {"tasktype": "migrate"}, format="json").status_code == 405
    assert admin.delete(reverse("task-detail", args=[chain[0].pk])).status_code == 405


# --- representation ------------------------------------------------------------------------------

def test_list_rows_carry_the_reference_fields_with_parents_as_a_list(admin, chain):
    discovery, first, second = chain
    rows = {row["id"]: row for row in admin.get(LIST).json()["results"]}
    assert set(rows[second.pk]) == {"id", "url", "job", "parents", "dynamic_parents", "site", "started", "state",
                                    "task_id", "tasktype"}
    assert rows[second.pk]["parents"] == [first.pk]
    assert rows[second.pk]["dynamic_parents"] == [discovery.pk]
    assert rows[first.pk]["parents"] == []
    assert rows[second.pk]["site"] == "lab"
    assert rows[second.pk]["task_id"] == str(second.task_id)
    assert rows[second.pk]["job"] == second.job_id


def test_detail_adds_the_batch_result_runtime_and_where_it_ran(admin, job):
    started = timezone.now() - timezone.timedelta(seconds=12)
    task = TaskFactory(job=job, state=TaskState.SUCCESS, started=started, completed=started + timezone.timedelta(
        seconds=4), paths=[{"path": "/mmfs1/a", "size": 3}], result={"outcomes": []}, node="nsd1", attempts=2,
        friendly_name="migrate 1 file")
    body = admin.get(reverse("task-detail", args=[task.pk])).json()
    for field in ("completed", "friendly_name", "paths", "result", "runtime", "queue", "node", "attempts"):
        assert field in body, field
    assert body["runtime"] == 4.0
    assert body["paths"] == [{"path": "/mmfs1/a", "size": 3}]
    assert (body["node"], body["attempts"], body["queue"]) == ("nsd1", 2, "default")


# --- filters -------------------------------------------------------------------------------------

def test_filters_tasktype_task_id_state_job_and_internal(admin, chain):
    discovery, first, second = chain
    other = TaskFactory(state=TaskState.FAILURE)
    assert ids(admin.get(f"{LIST}?tasktype=reverse_stub")) == {second.pk}
    assert ids(admin.get(f"{LIST}?task_id={first.task_id}")) == {first.pk}
    assert ids(admin.get(f"{LIST}?state=ERROR&state=FAILURE")) == {first.pk, other.pk}
    assert ids(admin.get(f"{LIST}?job_id={first.job_id}")) == {discovery.pk, first.pk, second.pk}
    assert ids(admin.get(f"{LIST}?internal=true")) == {discovery.pk}
    assert ids(admin.get(f"{LIST}?internal=false")) == {first.pk, second.pk, other.pk}


@pytest.mark.parametrize(("param", "value"), [("state", "processed"), ("task_id", "not-a-uuid"),
                                              ("job_id", "one"), ("internal", "maybe")])
def test_bad_filter_values_are_a_400_naming_the_parameter(admin, param, value):
    response = admin.get(f"{LIST}?{param}={value}")
    assert response.status_code == 400, response.content
    assert param in response.json()


def test_an_unknown_task_id_lists_nothing(admin, chain):
    assert ids(admin.get(f"{LIST}?task_id={uuid.uuid4()}")) == set()


# --- files ---------------------------------------------------------------------------------------

def test_files_list_what_the_task_reported_and_filter_by_state(owner, chain):
    _, first, second = chain
    ok = JobStatHistoryFactory(jobstat=JobStatFactory(job=first.job, task=first, state=PathState.PROCESSED))
    bad = JobStatHistoryFactory(jobstat=JobStatFactory(job=first.job, task=first, state=PathState.FAILED),
                                message="permission denied")
    JobStatHistoryFactory(jobstat=ok.jobstat, task=second, state=PathState.PROCESSED)
    url = reverse("task-files", args=[first.pk])
    assert ids(owner.get(url)) == {ok.pk, bad.pk}
    rows = owner.get(f"{url}?state=failed").json()["results"]
    assert [(r["path"], r["state"], r["message"], r["jobstat"]) for r in rows] == [
        (bad.jobstat.path, "failed", "permission denied", bad.jobstat_id)]
    response = owner.get(f"{url}?state=FAILURE")
    assert response.status_code == 400 and "state" in response.json()


def test_files_cost_the_same_queries_for_3_or_200_paths(admin, chain):
    task = chain[1]
    url = reverse("task-files", args=[task.pk]) + "?page_size=100"

    def make(n: int) -> None:
        for _ in range(n):
            JobStatHistoryFactory(jobstat=JobStatFactory(job=task.job, task=task))

    make(3)
    admin.get(url)
    with CaptureQueriesContext(connection) as few:
        admin.get(url)
    make(200)
    with CaptureQueriesContext(connection) as many:
        assert len(admin.get(url).json()["results"]) == 100
    assert len(many.captured_queries) == len(few.captured_queries)


def test_task_list_costs_the_same_queries_for_3_or_60_tasks(member, member_user, owner, site, job):
    permissions.grant("sites.view_site", member_user, site)
    url = f"{LIST}?page_size=100"

    def make(n: int) -> None:
        previous = None
        for _ in range(n):
            previous = TaskFactory(job=job, parents=[previous] if previous else None)

    make(3)
    for client in (member, owner):
        client.get(url)
    few = []
    for client in (member, owner):
        with CaptureQueriesContext(connection) as context:
            client.get(url)
        few.append(len(context.captured_queries))
    make(60)
    many = []
    for client in (member, owner):
        with CaptureQueriesContext(connection) as context:
            client.get(url)
        many.append(len(context.captured_queries))
    assert many == few
