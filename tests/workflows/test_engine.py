"""The engine end to end in one process: real services, real agent runtimes on real folders, an
in-process broker between them (``tests.workflows.inline``). Bytes are checked by SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sites.models import Bucket
from sites.services.sites import create_site
from sites.services.spaces import Placement, create_space
from sites.services.targets import create_target
from tests.factories import UserFactory
from tests.workflows.inline import InlineBroker, allocated, write_tree
from workflows import services, sweeper
from workflows.definitions import ensure_builtin_workflows
from workflows.models import Job, JobStat, Task
from workflows.services import LaunchRequest
from workflows.states import JobState, LaunchedVia, PathState, TaskState

pytestmark = pytest.mark.django_db(transaction=True)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> InlineBroker:
    from hub.celery import app

    inline = InlineBroker()
    monkeypatch.setattr(app, "send_task", inline.send_task)
    return inline


class Estate:
    def __init__(self, broker: InlineBroker, tmp_path: Path) -> None:
        self.broker = broker
        ensure_builtin_workflows()  # a transactional test starts from an emptied database
        self.site = create_site(None, name="alpha", shortcode="alpha")
        self.root = tmp_path / "alpha"
        self.space_dir = self.root / "projects"
        self.agent = broker.add_agent(self.site, self.root, tmp_path / "state-alpha")
        self.space = create_space(None, name="projects", mountpoint=str(self.space_dir),
                                  placements=[Placement(site=self.site)])
        self.objects = tmp_path / "objects"
        self.objects.mkdir()
        self.target = create_target(None, {
            "name": "archive", "space": self.space, "local_file_regex": ".*",
            "available_on_sites": [self.site],
            "bucket": {"name": "archive", "storage_type": Bucket.StorageType.FS,
                       "migration_target_folder": str(self.objects)}})
        broker.pump()  # the agent creates the space and configures the target
        assert self.space_dir.is_dir()
        self.admin = UserFactory(username="admin-engine", is_superuser=True, is_staff=True)

    def files(self, count: int = 12, *, subdirs: int = 3) -> dict[str, bytes]:
        files = {f"d{i % subdirs}/sub/f{i}.bin": (b"%d-" % i) * (5000 + 977 * i) for i in range(count)}
        write_tree(self.space_dir, files)
        return files

    def launch(self, workflow: str, paths: list[str], **extra) -> Job:
        request = LaunchRequest(site=self.site.name, workflow=workflow, paths=paths, **extra)
        return services.launch(request, actor=self.admin, via=LaunchedVia.API)


@pytest.fixture
def estate(broker: InlineBroker, tmp_path: Path) -> Estate:
    return Estate(broker, tmp_path)


def test_migrate_discovers_a_tree_and_leaves_verified_stubs(estate: Estate):
    files = estate.files(12)
    before = manifest(estate.space_dir)
    job = estate.launch("migrate", [str(estate.space_dir)])
    assert job.state == JobState.PENDING

    estate.broker.pump()
    job.refresh_from_db()

    assert job.state == JobState.SUCCESS, (job.state, job.state_reason)
    assert (job.paths_total, job.paths_done, job.paths_processed, job.paths_failed) == (12, 12, 12, 0)
    assert job.bytes_processed == sum(len(data) for data in files.values())
    assert job.progress == 100.0
    for relative in files:
        stub = estate.space_dir / relative
        assert stub.stat().st_size == len(files[relative])  # original size kept
        assert allocated(stub) < len(files[relative])  # blocks released
    stats = JobStat.objects.filter(job=job)
    assert stats.count() == 12 and set(stats.values_list("state", flat=True)) == {PathState.PROCESSED}
    discovery = Task.objects.filter(job=job, internal=True)
    # The space, then d0..d2, then each sub/: one discovery task per level's batch of directories.
    assert discovery.count() >= 3 and set(discovery.values_list("state", flat=True)) == {TaskState.SUCCESS}
    migrations = Task.objects.filter(job=job, tasktype="migrate")
    assert all(t.dynamic_parents for t in migrations)
    assert job.tasks_done == job.tasks_total == Task.objects.filter(job=job).count()

    recall = estate.launch("recall", [str(estate.space_dir)])
    estate.broker.pump()
    recall.refresh_from_db()
    assert recall.state == JobState.SUCCESS and recall.paths_processed == 12
    assert manifest(estate.space_dir) == before


def test_a_second_migrate_is_a_no_op_and_ends_skipped(estate: Estate):
    estate.files(4, subdirs=1)
    estate.launch("migrate", [str(estate.space_dir)])
    estate.broker.pump()
    again = estate.launch("migrate", [str(estate.space_dir)])
    estate.broker.pump()
    again.refresh_from_db()
    assert again.state == JobState.SKIPPED
    assert (again.paths_skipped, again.paths_processed, again.paths_failed) == (4, 0, 0)


def test_premigrate_keeps_content_and_given_paths_skip_discovery(estate: Estate):
    files = estate.files(3, subdirs=1)
    paths = [str(estate.space_dir / relative) for relative in files]
    job = estate.launch("premigrate", paths, discovery=None, discovery_given=True)
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS and job.paths_processed == 3
    assert not Task.objects.filter(job=job, internal=True).exists()
    for relative, data in files.items():
        assert (estate.space_dir / relative).read_bytes() == data
    assert len(list(estate.objects.rglob("*.bin"))) == 3 or any(estate.objects.rglob("*"))


def test_missing_paths_fail_with_a_reason_and_the_rest_go_on(estate: Estate):
    files = estate.files(2, subdirs=1)
    paths = [str(estate.space_dir / relative) for relative in files] + [str(estate.space_dir / "nope.bin")]
    job = estate.launch("migrate", paths, discovery=None, discovery_given=True)
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.HAS_FAILURES
    assert (job.paths_processed, job.paths_failed) == (2, 1)
    failed = JobStat.objects.get(job=job, state=PathState.FAILED)
    assert failed.path.endswith("nope.bin") and failed.message
    assert Task.objects.get(job=job).state == TaskState.ERROR


def test_a_path_outside_every_space_is_refused_before_anything_is_written(estate: Estate):
    from rest_framework.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        estate.launch("migrate", ["/etc/passwd"])
    assert "paths" in caught.value.detail
    assert not Job.objects.exists()


def test_pause_holds_ready_tasks_and_resume_finishes_the_job(estate: Estate):
    estate.files(6, subdirs=3)
    job = estate.launch("migrate", [str(estate.space_dir)])
    estate.broker.pump(limit=1)  # the first discovery ran; its subdirectory tasks are queued
    paused = services.pause_job(job, actor=estate.admin)
    assert paused.state in (JobState.PAUSING, JobState.PAUSED)
    estate.broker.pump()  # what was already sent finishes; nothing new goes out
    job.refresh_from_db()
    assert job.state == JobState.PAUSED
    waiting = Task.objects.filter(job=job, state=TaskState.PENDING, dispatched__isnull=True).count()
    assert waiting > 0

    resumed = services.resume_job(job, actor=estate.admin)
    assert resumed.state in (JobState.STARTED, JobState.PENDING)
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS and job.paths_processed == 6


def test_cancel_mid_job_cancels_what_never_ran_and_ends_cancelled(estate: Estate):
    estate.files(6, subdirs=3)
    job = estate.launch("migrate", [str(estate.space_dir)])
    estate.broker.pump(limit=2)
    cancelled = services.cancel_job(job, actor=estate.admin)
    assert cancelled.state in (JobState.CANCELLING, JobState.DEQUEUING, JobState.CANCELLED)
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert not Task.objects.filter(job=job, state__in=(TaskState.PENDING, TaskState.STARTED)).exists()
    assert job.cancelled_by == estate.admin


def test_resubmit_runs_only_the_failed_paths_again(estate: Estate):
    files = estate.files(2, subdirs=1)
    paths = [str(estate.space_dir / relative) for relative in files] + [str(estate.space_dir / "late.bin")]
    first = estate.launch("migrate", paths, discovery=None, discovery_given=True)
    estate.broker.pump()
    first.refresh_from_db()
    assert first.state == JobState.HAS_FAILURES
    (estate.space_dir / "late.bin").write_bytes(b"arrived later" * 1000)

    second = services.resubmit_job(first, actor=estate.admin)
    assert second is not None and second.resubmitted_from_id == first.pk
    assert second.launched_via == LaunchedVia.RESUBMIT
    assert second.paths == [str(estate.space_dir / "late.bin")]
    estate.broker.pump()
    second.refresh_from_db()
    assert second.state == JobState.SUCCESS and second.paths_processed == 1


def test_resubmit_of_an_unfinished_job_has_no_effect(estate: Estate):
    estate.files(2, subdirs=1)
    job = estate.launch("migrate", [str(estate.space_dir)])
    assert services.resubmit_job(job, actor=estate.admin) is None
    assert Job.objects.count() == 1


def test_a_job_waits_with_a_reason_while_no_node_is_alive_and_runs_when_one_is(estate: Estate):
    estate.files(2, subdirs=1)
    estate.broker.kill(estate.agent)
    job = estate.launch("migrate", [str(estate.space_dir)])
    job.refresh_from_db()
    assert job.state == JobState.PENDING and "no live node" in job.state_reason
    assert not estate.broker.hub_messages

    estate.agent.alive = True
    estate.broker.beat(estate.agent)
    sweeper.sweep()
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS and job.state_reason == ""


def test_a_task_whose_node_stopped_beating_is_requeued_once(estate: Estate):
    files = estate.files(3, subdirs=1)
    paths = [str(estate.space_dir / relative) for relative in files]
    job = estate.launch("migrate", paths, discovery=None, discovery_given=True)
    task = Task.objects.get(job=job)
    # The agent said it started, then its node went silent (killed mid-task).
    from workflows import engine

    engine.record_result({"task_id": str(task.task_id), "state": "STARTED", "node": "node1"})
    estate.broker.hub_messages.clear()
    estate.broker.beat(estate.agent, age=10_000)
    report = sweeper.sweep()
    assert report.requeued == 1
    task.refresh_from_db()
    assert task.state == TaskState.FAILURE and "stopped sending heartbeats" in task.result["error"]
    retry = Task.objects.get(retry_of=task)
    assert retry.paths == task.paths

    estate.broker.beat(estate.agent)  # the node is back (or another one took over)
    sweeper.sweep()
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS and job.paths_processed == 3
    assert JobStat.objects.filter(job=job, task=retry).count() == 3


def test_a_duplicated_report_changes_nothing(estate: Estate):
    estate.files(2, subdirs=1)
    job = estate.launch("migrate", [str(estate.space_dir)])
    estate.broker.pump()
    job.refresh_from_db()
    counts = (job.paths_done, job.paths_processed, job.tasks_done)
    from hub.celery import app

    # A redelivered report of a finished task (here with different content) is ignored.
    task = Task.objects.filter(job=job, tasktype="migrate").first()
    app.tasks["hub.workflows.task_result"](report={"task_id": str(task.task_id), "state": "SUCCESS",
                                                   "results": {"outcomes": []}})
    job.refresh_from_db()
    assert (job.paths_done, job.paths_processed, job.tasks_done) == counts
    assert job.state == JobState.SUCCESS


def test_purge_deletes_finished_jobs_past_their_ttl(estate: Estate):
    from datetime import timedelta

    from django.utils import timezone

    estate.files(1, subdirs=1)
    job = estate.launch("migrate", [str(estate.space_dir)])
    estate.broker.pump()
    Job.objects.filter(pk=job.pk).update(completed=timezone.now() - timedelta(days=91))
    assert sweeper.purge() == 1
    assert not Job.objects.exists() and not JobStat.objects.exists()


def chain_workflow(name: str = "premigrate-then-drop") -> None:
    from workflows.models import Workflow

    Workflow.objects.create(name=name, label="Premigrate, then delete the remote copy", discovery=None,
                            filter_rules=[{"type": "all", "state": "all", "action": [
                                {"name": "migrate", "premigrate": True}, {"name": "delete"}]}])


def test_only_processed_paths_go_on_to_the_next_step(estate: Estate):
    chain_workflow()
    files = estate.files(2, subdirs=1)
    paths = [str(estate.space_dir / relative) for relative in files] + [str(estate.space_dir / "gone.bin")]
    job = estate.launch("premigrate-then-drop", paths)
    estate.broker.pump()
    job.refresh_from_db()

    first, second = Task.objects.filter(job=job).order_by("step")
    assert (first.step, second.step) == (0, 1)
    assert list(second.parents.all()) == [first]
    assert first.state == TaskState.ERROR  # one path failed, the others went on
    assert sorted(item["path"] for item in second.paths) == sorted(paths[:2])
    assert second.state == TaskState.SUCCESS
    assert job.state == JobState.HAS_FAILURES
    assert (job.paths_processed, job.paths_failed, job.paths_done) == (2, 1, 3)
    for relative, data in files.items():
        assert (estate.space_dir / relative).read_bytes() == data  # premigrated then dropped: still local
    history = JobStat.objects.get(job=job, path=paths[0]).history.order_by("id")
    assert [h.tasktype for h in history] == ["migrate", "delete"]


def test_a_step_nothing_reached_is_skipped_and_the_job_fails(estate: Estate):
    chain_workflow()
    job = estate.launch("premigrate-then-drop", [str(estate.space_dir / "a.bin"), str(estate.space_dir / "b.bin")])
    estate.broker.pump()
    job.refresh_from_db()
    first, second = Task.objects.filter(job=job).order_by("step")
    assert first.state == TaskState.ERROR and second.state == TaskState.SKIPPED
    assert job.state == JobState.FAILURE and job.paths_failed == 2
    assert job.tasks_done == job.tasks_total == 2


def test_a_task_failure_stops_its_chain_and_fails_its_paths(estate: Estate):
    chain_workflow()
    files = estate.files(2, subdirs=1)
    # The agent no longer knows the target: the whole batch fails (a Failure, not per-path errors).
    estate.agent.runtime.state.remove_target(estate.target.endpoint_name)
    job = estate.launch("premigrate-then-drop", [str(estate.space_dir / r) for r in files])
    estate.broker.pump()
    job.refresh_from_db()
    first, second = Task.objects.filter(job=job).order_by("step")
    assert first.state == TaskState.FAILURE and "error" in first.result
    assert second.state == TaskState.SKIPPED
    assert job.state == JobState.FAILURE and job.paths_failed == 2
    assert set(JobStat.objects.filter(job=job).values_list("state", flat=True)) == {PathState.FAILED}


def test_editing_a_workflow_never_changes_a_running_job(estate: Estate):
    from workflows.models import Workflow

    estate.files(2, subdirs=1)
    job = estate.launch("premigrate", [str(estate.space_dir)])
    Workflow.objects.filter(name="premigrate").update(filter_rules=[
        {"type": "all", "state": "all", "action": [{"name": "migrate"}]}])  # would release blocks
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS
    assert job.definition["filter_rules"][0]["action"][0].get("premigrate") is True
    for path in estate.space_dir.rglob("*.bin"):
        assert allocated(path) >= path.stat().st_size  # still resident: premigrated, not stubbed


def test_only_the_window_of_tasks_is_queued_at_once(estate: Estate, monkeypatch: pytest.MonkeyPatch):
    from workflows import engine

    monkeypatch.setattr(engine, "MAX_IN_FLIGHT", 2)
    estate.site.file_batch_size = 1
    estate.site.save(update_fields=["file_batch_size"])
    files = estate.files(5, subdirs=1)
    job = estate.launch("migrate", [str(estate.space_dir / r) for r in files], discovery=None,
                        discovery_given=True)
    assert Task.objects.filter(job=job).count() == 5
    assert Task.objects.filter(job=job, dispatched__isnull=False).count() == 2
    assert len(estate.broker.hub_messages) == 2
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS and job.paths_processed == 5


def test_a_task_whose_agent_restarted_is_requeued(estate: Estate):
    from datetime import timedelta

    from django.utils import timezone

    from sites.models import Node
    from workflows import engine

    files = estate.files(2, subdirs=1)
    job = estate.launch("migrate", [str(estate.space_dir / r) for r in files], discovery=None, discovery_given=True)
    task = Task.objects.get(job=job)
    engine.record_result({"task_id": str(task.task_id), "state": "STARTED", "node": "node1",
                          "at": (timezone.now() - timedelta(minutes=5)).isoformat()})
    estate.broker.hub_messages.clear()  # the agent died with the message
    Node.objects.filter(site=estate.site, name="node1").update(
        info={"started_at": timezone.now().isoformat()}, last_heartbeat=timezone.now())
    assert sweeper.sweep().requeued == 1
    task.refresh_from_db()
    assert "restarted while running it" in task.result["error"]
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS and job.paths_processed == 2


def test_auto_batch_sizing_learns_from_finished_batches(estate: Estate):
    from datetime import timedelta

    from django.utils import timezone

    from workflows import engine

    estate.site.enable_auto_file_batch_sizing = True
    estate.site.file_batch_size = 100
    estate.site.save(update_fields=["enable_auto_file_batch_sizing", "file_batch_size"])
    assert engine._batch_files(estate.site) == engine.AUTO_BATCH_MIN  # nothing measured yet: start small
    files = estate.files(2, subdirs=1)
    job = estate.launch("migrate", [str(estate.space_dir / r) for r in files], discovery=None, discovery_given=True)
    estate.broker.pump()
    # Pretend that batch of 2 files took 1 s: 2 files/s -> 120 files fit a minute.
    now = timezone.now()
    Task.objects.filter(job=job).update(started=now - timedelta(seconds=1), completed=now)
    assert engine._batch_files(estate.site) == 120


def test_cancel_counts_the_paths_of_tasks_never_sent_as_aborted(estate: Estate, monkeypatch: pytest.MonkeyPatch):
    from workflows import engine

    monkeypatch.setattr(engine, "MAX_IN_FLIGHT", 1)
    estate.site.file_batch_size = 1
    estate.site.save(update_fields=["file_batch_size"])
    files = estate.files(4, subdirs=1)
    job = estate.launch("migrate", [str(estate.space_dir / r) for r in files], discovery=None, discovery_given=True)
    services.cancel_job(job, actor=estate.admin)
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert job.paths_done == 4 and job.paths_aborted + job.paths_processed == 4 and job.paths_aborted >= 3
    aborted = JobStat.objects.filter(job=job, state=PathState.ABORTED)
    assert aborted.count() == job.paths_aborted
    assert all(stat.history.filter(state=PathState.ABORTED).exists() for stat in aborted)


def test_a_task_sent_but_never_started_is_sent_again_after_the_invalidation_timeout(estate: Estate):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    files = estate.files(2, subdirs=1)
    job = estate.launch("migrate", [str(estate.space_dir / r) for r in files], discovery=None, discovery_given=True)
    estate.broker.hub_messages.clear()  # the agent took the message and died before reporting
    Task.objects.filter(job=job).update(dispatched=timezone.now() - timedelta(hours=7))
    call_command("sweep_jobs")
    retry = Task.objects.get(job=job, retry_of__isnull=False)
    assert "never started" in retry.retry_of.result["error"]
    estate.broker.pump()
    job.refresh_from_db()
    assert job.state == JobState.SUCCESS and job.paths_processed == 2
