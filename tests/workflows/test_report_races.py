"""Reports racing on PostgreSQL (real transactions, one connection per thread): the same report
applied twice at once counts once, and the last two tasks of a job finishing at once end it."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import require, using_postgres
from tests.factories import ExternalTargetFactory, NodeFactory, SiteFactory, SpaceFactory, UserFactory
from workflows import engine, services
from workflows.definitions import ensure_builtin_workflows
from workflows.models import Job, Task
from workflows.services import LaunchRequest
from workflows.states import JobState, LaunchedVia, TaskState

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def at_once(*works: Callable[[], None]) -> None:
    barrier = threading.Barrier(len(works))
    errors: list[BaseException] = []

    def run(work: Callable[[], None]) -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # re-raised below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(work,)) for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch) -> Job:
    require(using_postgres(), "needs PostgreSQL (DATABASE_URL=postgres://...)")
    from hub.celery import app

    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: None)  # no agents here
    ensure_builtin_workflows()
    site = SiteFactory(name="race")
    site.file_batch_size = 1
    site.save(update_fields=["file_batch_size"])
    node = NodeFactory(site=site, name="n1", last_heartbeat=timezone.now())
    node.queues.add(*site.queues.all())
    space = SpaceFactory(name="race", mountpoint="/mmfs1/race", sites=[site])
    ExternalTargetFactory(name="race-target", space=space, available_on_sites=[site])
    admin = UserFactory(username="race-admin", is_superuser=True)
    return services.launch(LaunchRequest(site="race", workflow="migrate", paths=["/mmfs1/race/a", "/mmfs1/race/b"],
                                         discovery=None, discovery_given=True), actor=admin, via=LaunchedVia.API)


def success(task: Task) -> dict:
    path = task.paths[0]["path"]
    return {"task_id": str(task.task_id), "state": "SUCCESS", "node": "n1",
            "results": {"outcomes": [{"path": path, "status": "processed", "size": 10}]}}


def test_the_same_report_applied_twice_at_once_counts_once(job: Job):
    first = Task.objects.filter(job=job).order_by("id").first()
    report = success(first)
    at_once(lambda: engine.record_result(report), lambda: engine.record_result(report))
    job.refresh_from_db()
    assert (job.tasks_done, job.paths_done, job.paths_processed, job.bytes_processed) == (1, 1, 1, 10)
    assert job.state in (JobState.PENDING, JobState.STARTED)


def test_the_last_two_tasks_finishing_at_once_end_the_job(job: Job):
    first, second = Task.objects.filter(job=job).order_by("id")
    assert first.state == second.state == TaskState.PENDING
    at_once(lambda: engine.record_result(success(first)), lambda: engine.record_result(success(second)))
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS
    assert (job.tasks_done, job.tasks_total, job.paths_processed) == (2, 2, 2)
