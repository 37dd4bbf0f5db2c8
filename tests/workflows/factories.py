"""Factories of the workflow engine's rows: each builds one object with explicit dependencies.

Jobs, tasks and job stats are made directly (no launch, no agent), so the tracking API can be
tested with any counters and states; the engine's own tests go through ``workflows.services``.
"""

from __future__ import annotations

import factory

from tests.factories import SiteFactory
from workflows.models import Job, JobStat, JobStatHistory, Task, TaskDependency, Workflow
from workflows.models.jobs import path_digest
from workflows.states import JobState, LaunchedVia, PathState, TaskState


class WorkflowFactory(factory.django.DjangoModelFactory):
    """A custom (not built-in) workflow that migrates every file."""

    class Meta:
        model = Workflow

    name = factory.Sequence(lambda n: f"wf{n}")
    label = factory.LazyAttribute(lambda wf: f"Workflow {wf.name}")
    discovery = Workflow.Discovery.RECURSIVE
    fields = factory.LazyFunction(lambda: [
        {"name": "lock_level", "type": "choice", "options": ["partial", "implicit", "none"], "default": "partial"},
    ])
    filter_rules = factory.LazyFunction(lambda: [
        {"type": "file", "state": "all", "action": [{"name": "migrate", "lock_level": "{lock_level}"}]},
    ])


class JobFactory(factory.django.DjangoModelFactory):
    """A job of ``workflow`` on ``site`` (both made when not given), with the workflow's frozen copy."""

    class Meta:
        model = Job

    workflow = factory.SubFactory(WorkflowFactory)
    workflow_name = factory.LazyAttribute(lambda job: job.workflow.name if job.workflow else "deleted")
    definition = factory.LazyAttribute(lambda job: job.workflow.definition() if job.workflow else {})
    site = factory.SubFactory(SiteFactory)
    site_name = factory.LazyAttribute(lambda job: job.site.name if job.site else "gone")
    queue = "default"
    state = JobState.PENDING
    discovery = factory.LazyAttribute(lambda job: job.workflow.discovery if job.workflow else None)
    paths = factory.LazyFunction(lambda: ["/mmfs1/data"])
    # As the launch stores it: every input path after a "\n" (input_paths_prefix is one LIKE).
    paths_text = factory.LazyAttribute(lambda job: "".join(f"\n{path}" for path in job.paths))
    fields = factory.LazyFunction(lambda: {"lock_level": "partial"})
    launched_via = LaunchedVia.API
    owner = None


class TaskFactory(factory.django.DjangoModelFactory):
    """A task of ``job`` on the job's site; ``parents=[task, ...]`` adds the DAG edges."""

    class Meta:
        model = Task
        skip_postgeneration_save = True

    job = factory.SubFactory(JobFactory)
    tasktype = "migrate"
    site = factory.LazyAttribute(lambda task: task.job.site)
    site_name = factory.LazyAttribute(lambda task: task.job.site_name)
    queue = factory.LazyAttribute(lambda task: task.job.queue)
    state = TaskState.PENDING
    paths = factory.LazyFunction(list)

    @factory.post_generation
    def parents(self, create, extracted, **kwargs):
        if create and extracted:
            TaskDependency.objects.bulk_create([TaskDependency(parent=parent, child=self) for parent in extracted])


class JobStatFactory(factory.django.DjangoModelFactory):
    """One path of ``job`` and its latest outcome (reported by ``task``, if given)."""

    class Meta:
        model = JobStat

    job = factory.SubFactory(JobFactory)
    path = factory.Sequence(lambda n: f"/mmfs1/data/file{n}")
    path_key = factory.LazyAttribute(lambda stat: path_digest(stat.path))
    task = None
    state = PathState.PROCESSED
    size = 1024


class JobStatHistoryFactory(factory.django.DjangoModelFactory):
    """One outcome of a path, as ``task`` reported it."""

    class Meta:
        model = JobStatHistory

    jobstat = factory.SubFactory(JobStatFactory)
    task = factory.LazyAttribute(lambda row: row.jobstat.task)
    tasktype = factory.LazyAttribute(lambda row: row.task.tasktype if row.task else "")
    state = factory.LazyAttribute(lambda row: row.jobstat.state)
    message = ""


def listed_ids(response) -> set[int]:
    """The ids of a successful list response's page."""
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}
