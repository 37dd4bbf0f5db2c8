"""``/api/jobs/``: who sees which jobs, every filter of the reference, and the read-only extras
(stats, recent, jobtype_choices, progress, statistics, files)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hub import permissions
from sites.models import Queue
from tests.factories import SiteFactory, UserFactory, client_key
from tests.workflows.factories import JobFactory, JobStatFactory, TaskFactory, WorkflowFactory
from tests.workflows.factories import listed_ids as ids
from workflows.filtersets import parse_period
from workflows.models import Job
from workflows.states import JobState, LaunchedVia, PathState

pytestmark = [pytest.mark.django_db]

LIST = reverse("job-list")


def listed(client, query: str = "") -> set[int]:
    return ids(client.get(f"{LIST}?{query}"))


# --- visibility ----------------------------------------------------------------------------------

def test_anonymous_gets_401(anon, job):
    assert anon.get(LIST).status_code == 401
    assert anon.get(reverse("job-detail", args=[job.pk])).status_code == 401
    assert anon.get(reverse("job-stats")).status_code == 401


def test_outsider_sees_no_job_and_gets_404_on_each(outsider, job):
    assert listed(outsider) == set()
    for name in ("job-detail", "job-progress", "job-statistics", "job-files"):
        assert outsider.get(reverse(name, args=[job.pk])).status_code == 404, name
    assert outsider.get(reverse("job-stats")).json()["total"] == 0
    assert outsider.get(reverse("job-recent")).json()["results"] == []


def test_member_granted_view_on_the_site_sees_its_jobs_only(member, member_user, job, site):
    other = JobFactory()
    permissions.grant("sites.view_site", member_user, site)
    assert listed(member) == {job.pk}
    assert member.get(reverse("job-detail", args=[job.pk])).status_code == 200
    assert member.get(reverse("job-detail", args=[other.pk])).status_code == 404


def test_owner_sees_the_jobs_they_launched_without_any_grant(owner, job):
    JobFactory(site=job.site)  # someone else's, on the same site
    assert listed(owner) == {job.pk}
    assert owner.get(reverse("job-detail", args=[job.pk])).status_code == 200


def test_admin_sees_every_job_including_those_of_a_deleted_site(admin, job):
    orphan = JobFactory(site=None, site_name="gone")
    assert listed(admin) == {job.pk, orphan.pk}


# --- representation ------------------------------------------------------------------------------

def test_job_representation_has_the_documented_fields_and_counters(admin, site, owner_user):
    key, _ = client_key(owner_user)
    started = timezone.now() - timedelta(seconds=90)
    job = JobFactory(site=site, owner=owner_user, clientkey=key, schedule_id=7, state=JobState.HAS_FAILURES,
                     state_reason="2 paths failed", started=started, completed=started + timedelta(seconds=30),
                     paths=["/mmfs1/a", "/mmfs1/b"], include=["*.dat"], exclude=["*.tmp"],
                     paths_total=10, paths_done=10, paths_processed=8, paths_failed=2, bytes_total=4096,
                     bytes_processed=2048, tasks_total=3, tasks_done=3, tasks_failed=1)
    row = admin.get(LIST).json()["results"][0]
    assert set(row) == {
        "id", "url", "workflow", "workflow_label", "site", "site_id", "queue", "state", "state_reason", "discovery",
        "paths", "fields", "include", "exclude", "ignore_site_includes", "ignore_site_excludes", "launched_via",
        "owner", "owner_id", "clientkey", "schedule", "resubmitted_from", "created", "started", "completed",
        "runtime", "progress", "counts",
    }
    assert row["workflow"] == job.workflow_name
    assert row["workflow_label"] == job.workflow.label
    assert (row["site"], row["site_id"], row["queue"]) == ("lab", site.pk, "default")
    assert (row["owner"], row["owner_id"], row["clientkey"], row["schedule"]) == (
        "owner-persona", owner_user.pk, key.pk, 7)
    assert row["paths"] == ["/mmfs1/a", "/mmfs1/b"]
    assert row["runtime"] == 30.0
    assert row["progress"] == 100.0
    assert row["counts"] == {"paths_total": 10, "paths_done": 10, "processed": 8, "failed": 2, "aborted": 0,
                             "skipped": 0, "bytes_total": 4096, "bytes_processed": 2048, "tasks_total": 3,
                             "tasks_done": 3, "tasks_failed": 1}
    assert "definition" not in row


def test_detail_adds_the_frozen_definition_which_later_edits_do_not_change(admin, site):
    workflow = WorkflowFactory(label="Before")
    job = JobFactory(site=site, workflow=workflow)
    workflow.label = "After"
    workflow.save()
    body = admin.get(reverse("job-detail", args=[job.pk])).json()
    assert body["definition"]["label"] == "Before"
    assert body["workflow_label"] == "Before"
    assert body["definition"]["filter_rules"] == workflow.filter_rules


def test_a_job_whose_workflow_was_deleted_keeps_its_name_and_label(admin, site):
    job = JobFactory(site=site)
    name, label = job.workflow_name, job.workflow.label
    job.workflow.delete()
    row = admin.get(LIST).json()["results"][0]
    assert (row["workflow"], row["workflow_label"]) == (name, label)


# --- filters -------------------------------------------------------------------------------------

def test_created_period_strings_select_jobs_by_age(admin, site):
    now = timezone.now()
    recent = JobFactory(site=site, created=now - timedelta(minutes=10))
    hours = JobFactory(site=site, created=now - timedelta(hours=20))
    days = JobFactory(site=site, created=now - timedelta(days=5))
    weeks = JobFactory(site=site, created=now - timedelta(days=12))
    old = JobFactory(site=site, created=now - timedelta(days=40))
    assert listed(admin, "created=30m") == {recent.pk}
    assert listed(admin, "created=24h") == {recent.pk, hours.pk}
    assert listed(admin, "created=7d") == {recent.pk, hours.pk, days.pk}
    assert listed(admin, "created=2w") == {recent.pk, hours.pk, days.pk, weeks.pk}
    assert listed(admin, "") == {recent.pk, hours.pk, days.pk, weeks.pk, old.pk}


def test_created_today_and_yesterday_follow_calendar_days(admin, site):
    now = timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    today = JobFactory(site=site, created=now)
    yesterday = JobFactory(site=site, created=midnight - timedelta(hours=1))
    JobFactory(site=site, created=midnight - timedelta(hours=30))
    assert listed(admin, "created=today") == {today.pk}
    assert listed(admin, "created=yesterday") == {yesterday.pk}


@pytest.mark.parametrize("value", ["30", "m", "5y", "-1d", "1.5h", "tomorrow", "7 d"])
def test_a_period_that_is_not_one_is_a_400_naming_created(admin, value):
    response = admin.get(f"{LIST}?created={value}")
    assert response.status_code == 400, response.content
    assert "created" in response.json()


def test_parse_period_answers_start_and_end():
    now = timezone.now()
    assert parse_period("90m", now=now) == (now - timedelta(minutes=90), None)
    start, end = parse_period("yesterday", now=now)
    assert end - start == timedelta(days=1) and end <= now


def test_created_time_range_is_discarded_when_created_is_given(admin, site):
    now = timezone.now()
    new = JobFactory(site=site, created=now - timedelta(minutes=5))
    old = JobFactory(site=site, created=now - timedelta(days=3))
    since = (now - timedelta(days=4)).isoformat().replace("+00:00", "Z")
    until = (now - timedelta(days=2)).isoformat().replace("+00:00", "Z")
    assert listed(admin, f"created_time_from={since}&created_time_to={until}") == {old.pk}
    assert listed(admin, f"created_time_from={since}") == {old.pk, new.pk}
    assert listed(admin, f"created=1h&created_time_from={since}&created_time_to={until}") == {new.pk}


def test_completed_time_range(admin, site):
    now = timezone.now()
    done = JobFactory(site=site, state=JobState.SUCCESS, completed=now - timedelta(hours=2))
    JobFactory(site=site, state=JobState.SUCCESS, completed=now - timedelta(days=2))
    JobFactory(site=site)  # not completed
    since = (now - timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    until = now.isoformat().replace("+00:00", "Z")
    assert listed(admin, f"completed_time_from={since}&completed_time_to={until}") == {done.pk}


@pytest.mark.parametrize("param", ["created_time_from", "created_time_to", "completed_time_from",
                                   "completed_time_to"])
def test_a_time_that_is_not_iso_8601_is_a_400_naming_it(admin, param):
    response = admin.get(f"{LIST}?{param}=last-tuesday")
    assert response.status_code == 400 and param in response.json()


def test_workflow_filter_is_the_workflow_name(admin, site):
    wanted = JobFactory(site=site, workflow=WorkflowFactory(name="nightly"))
    JobFactory(site=site)
    assert listed(admin, "workflow=nightly") == {wanted.pk}


def test_state_filter_takes_several_states_and_refuses_unknown_ones(admin, site):
    running = JobFactory(site=site, state=JobState.STARTED)
    failed = JobFactory(site=site, state=JobState.FAILURE)
    JobFactory(site=site, state=JobState.SUCCESS)
    assert listed(admin, "state=STARTED&state=FAILURE") == {running.pk, failed.pk}
    response = admin.get(f"{LIST}?state=RUNNING")
    assert response.status_code == 400 and "state" in response.json()


def test_owner_ids_match_owners_unknown_and_system(admin, site, owner_user):
    other = UserFactory()
    mine = JobFactory(site=site, owner=owner_user)
    theirs = JobFactory(site=site, owner=other)
    unknown = JobFactory(site=site, owner=None, launched_via=LaunchedVia.API)
    scheduled = JobFactory(site=site, owner=None, launched_via=LaunchedVia.SCHEDULE, schedule_id=3)
    by_policy = JobFactory(site=site, owner=None, launched_via=LaunchedVia.POLICY)
    assert listed(admin, f"owner_ids={owner_user.pk}") == {mine.pk}
    assert listed(admin, f"owner_ids={owner_user.pk}&owner_ids={other.pk}") == {mine.pk, theirs.pk}
    assert listed(admin, f"owner_ids={owner_user.pk},{other.pk}") == {mine.pk, theirs.pk}
    assert listed(admin, "owner_ids=-1") == {unknown.pk}
    assert listed(admin, "owner_ids=-2") == {scheduled.pk, by_policy.pk}
    assert listed(admin, f"owner_ids=-1&owner_ids={owner_user.pk}") == {unknown.pk, mine.pk}


@pytest.mark.parametrize("param", ["owner_ids", "clientkey_ids", "schedule_ids"])
@pytest.mark.parametrize("value", ["me", "1.5", "99999999999999999999999"])
def test_id_lists_refuse_values_that_are_not_integers(admin, param, value):
    response = admin.get(f"{LIST}?{param}={value}")
    assert response.status_code == 400, response.content
    assert param in response.json()


def test_clientkey_and_schedule_ids(admin, site, owner_user):
    key, _ = client_key(owner_user)
    by_key = JobFactory(site=site, owner=owner_user, clientkey=key)
    scheduled = JobFactory(site=site, launched_via=LaunchedVia.SCHEDULE, schedule_id=11)
    other_schedule = JobFactory(site=site, launched_via=LaunchedVia.SCHEDULE, schedule_id=12)
    assert listed(admin, f"clientkey_ids={key.pk}") == {by_key.pk}
    assert listed(admin, "schedule_ids=11") == {scheduled.pk}
    assert listed(admin, "schedule_ids=11,12") == {scheduled.pk, other_schedule.pk}


def test_site_and_site_id_filters(admin, site):
    here = JobFactory(site=site)
    elsewhere = JobFactory()
    assert listed(admin, "site=lab") == {here.pk}
    assert listed(admin, f"site_id={elsewhere.site_id}") == {elsewhere.pk}
    assert admin.get(f"{LIST}?site_id=lab").status_code == 400
    assert admin.get(f"{LIST}?site_id=1.5").status_code == 400


def test_input_paths_prefix_matches_the_start_of_any_input_path(admin, site):
    projects = JobFactory(site=site, paths=["/mmfs1/scratch/x", "/mmfs1/projects/alpha"])
    JobFactory(site=site, paths=["/mmfs1/home/projects/alpha"])
    assert listed(admin, "input_paths_prefix=/mmfs1/projects") == {projects.pk}
    assert listed(admin, "input_paths_prefix=/mmfs1/scratch/x") == {projects.pk}


def test_search_keyword_looks_at_id_workflow_site_owner_paths_and_reason(admin, site):
    owner_user = UserFactory(username="rosalind")
    by_owner = JobFactory(site=site, owner=owner_user, paths=["/data/p"])
    by_path = JobFactory(site=site, paths=["/mmfs1/genomes/run1"])
    by_reason = JobFactory(site=site, paths=["/data/q"], state_reason="no live node for queue fast")
    by_workflow = JobFactory(site=site, paths=["/data/r"], workflow=WorkflowFactory(name="archive-nightly"))
    elsewhere = JobFactory(site=SiteFactory(name="tokyo"), paths=["/data/s"])
    assert listed(admin, "search_keyword=rosal") == {by_owner.pk}
    assert listed(admin, "search_keyword=genomes") == {by_path.pk}
    assert listed(admin, "search_keyword=live node") == {by_reason.pk}
    assert listed(admin, "search_keyword=nightly") == {by_workflow.pk}
    assert listed(admin, "search_keyword=toky") == {elsewhere.pk}
    assert by_owner.pk in listed(admin, f"search_keyword={by_owner.pk}")


def test_hide_noop_hides_skipped_and_successes_that_processed_nothing(admin, site):
    useful = JobFactory(site=site, state=JobState.SUCCESS, paths_processed=3)
    running = JobFactory(site=site, state=JobState.STARTED)
    JobFactory(site=site, state=JobState.SUCCESS, paths_processed=0)
    JobFactory(site=site, state=JobState.SKIPPED)
    assert listed(admin, "hide_noop=true") == {useful.pk, running.pk}
    assert len(listed(admin, "hide_noop=false")) == 4
    response = admin.get(f"{LIST}?hide_noop=perhaps")
    assert response.status_code == 400 and "hide_noop" in response.json()


def test_queue_and_queue_id_filters(admin, site):
    fast = Queue.objects.create(site=site, name="fast")
    other_site = SiteFactory()
    Queue.objects.create(site=other_site, name="fast")
    on_fast = JobFactory(site=site, queue="fast")
    on_default = JobFactory(site=site)
    fast_elsewhere = JobFactory(site=other_site, queue="fast")
    assert listed(admin, "queue=fast") == {on_fast.pk, fast_elsewhere.pk}
    assert listed(admin, f"queue_id={fast.pk}") == {on_fast.pk}
    default = Queue.objects.get(site=site, name="default")
    assert listed(admin, f"queue_id={default.pk}") == {on_default.pk}
    assert listed(admin, "queue_id=999999") == set()
    assert admin.get(f"{LIST}?queue_id=fast").status_code == 400


def test_filters_never_widen_what_a_member_sees(member, member_user, site):
    permissions.grant("sites.view_site", member_user, site)
    visible = JobFactory(site=site, state=JobState.FAILURE)
    JobFactory(state=JobState.FAILURE)
    assert listed(member, "state=FAILURE") == {visible.pk}
    assert member.get(f"{reverse('job-stats')}?state=FAILURE").json()["total"] == 1


# --- query counts --------------------------------------------------------------------------------

def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(context.captured_queries)


@pytest.mark.parametrize("url_name", ["job-list", "job-recent", "job-stats", "job-jobtype-choices"])
def test_job_listings_cost_the_same_queries_for_3_or_60_jobs(url_name, admin, member, member_user, owner,
                                                             owner_user, site):
    permissions.grant("sites.view_site", member_user, site)
    url = reverse(url_name) + "?page_size=100"

    def make(n: int) -> None:
        for i in range(n):
            JobFactory(site=site, owner=owner_user if i % 2 else UserFactory(),
                       workflow=WorkflowFactory() if i % 3 == 0 else None, workflow_name=f"name{i % 3}")

    make(3)
    clients = {"admin": admin, "member": member, "owner": owner}
    for client in clients.values():
        client.get(url)
    few = {who: _queries(client, url) for who, client in clients.items()}
    make(60)
    many = {who: _queries(client, url) for who, client in clients.items()}
    assert many == few


def test_job_files_cost_the_same_queries_for_3_or_300_paths(admin, site):
    job = JobFactory(site=site)
    url = reverse("job-files", args=[job.pk]) + "?page_size=100"
    for _ in range(3):
        JobStatFactory(job=job)
    admin.get(url)
    few = _queries(admin, url)
    for _ in range(300):
        JobStatFactory(job=job)
    assert _queries(admin, url) == few


# --- stats, recent, jobtype_choices ----------------------------------------------------------------

def test_stats_count_every_state_and_sum_the_paths(admin, site):
    JobFactory(site=site, state=JobState.SUCCESS, paths_processed=5, paths_skipped=1)
    JobFactory(site=site, state=JobState.HAS_FAILURES, paths_processed=2, paths_failed=3, paths_aborted=1)
    JobFactory(site=site, state=JobState.STARTED)
    body = admin.get(reverse("job-stats")).json()
    assert body["total"] == 3
    assert set(body["states"]) == set(JobState.values)
    assert body["states"]["SUCCESS"] == 1 and body["states"]["HAS_FAILURES"] == 1
    assert body["states"]["STARTED"] == 1 and body["states"]["CANCELLED"] == 0
    assert body["paths"] == {"processed": 7, "failed": 3, "aborted": 1, "skipped": 1}


def test_stats_take_the_list_filters_and_refuse_bad_ones(admin, site):
    JobFactory(site=site, state=JobState.SUCCESS, paths_processed=5)
    JobFactory(state=JobState.SUCCESS, paths_processed=1)
    body = admin.get(f"{reverse('job-stats')}?site=lab").json()
    assert body["total"] == 1 and body["paths"]["processed"] == 5
    assert admin.get(f"{reverse('job-stats')}?created=ages").status_code == 400


def test_recent_answers_the_last_five_visible_jobs_newest_first(owner, owner_user, site):
    now = timezone.now()
    mine = [JobFactory(site=site, owner=owner_user, created=now - timedelta(minutes=i)) for i in range(7)]
    JobFactory(site=site, created=now)  # not the owner's
    body = owner.get(reverse("job-recent")).json()
    assert body["count"] == 5
    assert [row["id"] for row in body["results"]] == [job.pk for job in mine[:5]]


def test_jobtype_choices_list_workflows_and_names_jobs_still_carry(admin, site):
    WorkflowFactory(name="alpha", label="Alpha copy")
    JobFactory(site=site, workflow=None, workflow_name="retired")
    choices = admin.get(reverse("job-jobtype-choices")).json()
    assert {"value": "alpha", "label": "Alpha copy"} in choices
    assert {"value": "retired", "label": "retired"} in choices
    assert len([c for c in choices if c["value"] == "alpha"]) == 1


def test_jobtype_choices_name_no_job_the_caller_may_not_see(outsider, site):
    JobFactory(site=site, workflow=None, workflow_name="secret-project")
    assert "secret-project" not in {c["value"] for c in outsider.get(reverse("job-jobtype-choices")).json()}


# --- progress, statistics, files -----------------------------------------------------------------

def test_progress_comes_from_the_counters(owner, job):
    Job.objects.filter(pk=job.pk).update(state=JobState.STARTED, paths_total=8, paths_done=2, discovery_pending=1)
    body = owner.get(reverse("job-progress", args=[job.pk])).json()
    assert body == {"id": job.pk, "state": "STARTED", "progress": 25.0, "paths_total": 8, "paths_done": 2,
                    "discovery_complete": False}
    Job.objects.filter(pk=job.pk).update(discovery_pending=0)
    assert owner.get(reverse("job-progress", args=[job.pk])).json()["discovery_complete"] is True


def test_statistics_give_files_and_bytes_per_path_state_in_one_query(owner, job):
    for size in (100, 200):
        JobStatFactory(job=job, state=PathState.PROCESSED, size=size)
    JobStatFactory(job=job, state=PathState.FAILED, size=None)
    JobStatFactory(job=JobFactory(site=job.site), state=PathState.PROCESSED, size=5000)  # another job's
    url = reverse("job-statistics", args=[job.pk])
    owner.get(url)
    with CaptureQueriesContext(connection) as context:
        body = owner.get(url).json()
    assert body == {"pending": {"files": 0, "bytes": 0}, "processed": {"files": 2, "bytes": 300},
                    "failed": {"files": 1, "bytes": 0}, "aborted": {"files": 0, "bytes": 0},
                    "skipped": {"files": 0, "bytes": 0}}
    assert sum("GROUP BY" in q["sql"] for q in context.captured_queries) == 1


def test_files_list_the_job_paths_and_filter_by_category(owner, job):
    task = TaskFactory(job=job)
    done = JobStatFactory(job=job, state=PathState.PROCESSED, task=task)
    failed = JobStatFactory(job=job, state=PathState.FAILED, code="ENOENT", message="no such file", task=task)
    JobStatFactory(job=JobFactory(site=job.site))
    url = reverse("job-files", args=[job.pk])
    assert ids(owner.get(url)) == {done.pk, failed.pk}
    rows = owner.get(f"{url}?category=failed").json()["results"]
    assert [(r["id"], r["path"], r["state"], r["code"], r["message"], r["task"], r["job"]) for r in rows] == [
        (failed.pk, failed.path, "failed", "ENOENT", "no such file", task.pk, job.pk)]
    response = owner.get(f"{url}?category=broken")
    assert response.status_code == 400 and "category" in response.json()


def test_files_with_page_size_0_stream_every_path(owner, job):
    for _ in range(25):
        JobStatFactory(job=job)
    response = owner.get(reverse("job-files", args=[job.pk]) + "?page_size=0")
    assert response.status_code == 200
    body = json.loads(b"".join(response.streaming_content))
    assert body["count"] == 25 and len(body["results"]) == 25


def test_list_with_page_size_0_streams_every_job(admin, site):
    for _ in range(23):
        JobFactory(site=site)
    response = admin.get(f"{LIST}?page_size=0")
    body = json.loads(b"".join(response.streaming_content))
    assert body["count"] == 23 and len(body["results"]) == 23
    assert "counts" in body["results"][0]


# --- hostile input -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["job-detail", "job-progress", "job-statistics", "job-files", "task-detail",
                                  "task-files", "jobstat-detail", "jobstat-history"])
@pytest.mark.parametrize("value", ["%00", "abc", "9" * 30, "-1", "1e5"])
def test_hostile_object_lookups_are_404_not_500(admin, name, value):
    response = admin.get(reverse(name, args=["placeholder"]).replace("placeholder", value))
    assert response.status_code == 404, (name, value, response.status_code)


@pytest.mark.parametrize(("name", "param"), [
    ("job-list", "search_keyword"), ("job-list", "site"), ("job-list", "input_paths_prefix"),
    ("job-list", "workflow"), ("job-list", "queue"), ("job-stats", "search_keyword"), ("task-list", "tasktype"),
    ("jobstat-list", "path"), ("jobstat-list", "path_prefix"),
])
def test_nul_bytes_in_filters_are_a_400_or_nothing_not_a_500(admin, name, param, job):
    response = admin.get(reverse(name), {param: "a\x00b"})
    assert response.status_code in (200, 400), (name, param, response.status_code)
