"""Every state of jobs, tasks and paths, once, with the legal transitions.

Who sets each state is written beside it. Code never spells a state as a literal: it names the
member (``JobState.STARTED``). Every transition of a row is a conditional UPDATE filtered on the
states it may come from (``workflows.models``' ``transition`` methods), so two workers finishing
the same task, or a late report arriving after a cancel, cannot produce an illegal state.

Job states (the product's list, including its newer Failing and Has Failures):

    PENDING       created; discovery still populating, or waiting for a queue with a live node
                  (``Job.state_reason`` says which)                              - launch
    STARTED       a task of the job started                                      - engine
    FAILING       still running, and some task failed or some path failed        - engine
    PAUSING       pause requested; running tasks finish, nothing new is sent     - pause()
    PAUSED        paused and nothing of the job is running                        - engine
    CANCELLING    cancel requested; running tasks were told to stop              - cancel()
    DEQUEUING     cancel requested; only queued (sent, not started) tasks remain - cancel()/engine
    CANCELLED     cancelled and nothing of the job is running                     - engine
    SUCCESS       every path processed (some may be skipped)                      - engine
    HAS_FAILURES  finished; some paths processed and some failed                  - engine
    FAILURE       finished; paths failed and none was processed                   - engine
    SKIPPED       finished with nothing to do (a no-op: no path processed or failed) - engine

Task states (the product's): PENDING (created; waiting for its parents, or queued once
``dispatched`` is set), STARTED (the agent's STARTED report), SUCCESS (every path processed or
skipped), ERROR (structured output with some paths failed or aborted: the processed paths go on),
FAILURE (no structured output - the agent raised, the message could not be sent, or the sweeper
gave up on it: its chain stops), SKIPPED (nothing reached it), CANCELLED (the job was cancelled
before or while it ran).

Path (job stat) states: the agent's per-path statuses (``agent.contract.PathStatus``), plus
PENDING for a path handed to a task that has not reported yet.
"""

from __future__ import annotations

from django.db import models


class JobState(models.TextChoices):
    PENDING = "PENDING", "Pending"
    STARTED = "STARTED", "Started"
    FAILING = "FAILING", "Failing"
    PAUSING = "PAUSING", "Pausing"
    PAUSED = "PAUSED", "Paused"
    CANCELLING = "CANCELLING", "Cancelling"
    DEQUEUING = "DEQUEUING", "Dequeuing"
    CANCELLED = "CANCELLED", "Cancelled"
    SUCCESS = "SUCCESS", "Success"
    HAS_FAILURES = "HAS_FAILURES", "Has failures"
    FAILURE = "FAILURE", "Failure"
    SKIPPED = "SKIPPED", "Skipped"


JOB_TERMINAL = frozenset({JobState.CANCELLED, JobState.SUCCESS, JobState.HAS_FAILURES, JobState.FAILURE,
                          JobState.SKIPPED})
JOB_ACTIVE = frozenset(set(JobState) - JOB_TERMINAL)
# States in which the engine sends ready tasks to the agents.
JOB_DISPATCHING = frozenset({JobState.PENDING, JobState.STARTED, JobState.FAILING})
JOB_CANCELLING = frozenset({JobState.CANCELLING, JobState.DEQUEUING})
JOB_PAUSED_OR_PAUSING = frozenset({JobState.PAUSING, JobState.PAUSED})

_RUNNING = (JobState.PENDING, JobState.STARTED, JobState.FAILING)
_FINISHING_FROM = (*_RUNNING, JobState.PAUSING, JobState.PAUSED)
JOB_TRANSITIONS: dict[str, tuple[str, ...]] = {
    # Resuming a job paused before any of its tasks started.
    JobState.PENDING: (JobState.PAUSING, JobState.PAUSED),
    JobState.STARTED: (JobState.PENDING, JobState.PAUSING, JobState.PAUSED),
    JobState.FAILING: (JobState.PENDING, JobState.STARTED, JobState.PAUSING, JobState.PAUSED),
    JobState.PAUSING: _RUNNING,
    JobState.PAUSED: (*_RUNNING, JobState.PAUSING),
    JobState.CANCELLING: (*_RUNNING, JobState.PAUSING, JobState.PAUSED),
    # Once no task of a cancelling job is running, only queued ones are left to be dequeued.
    JobState.DEQUEUING: (*_RUNNING, JobState.PAUSING, JobState.PAUSED, JobState.CANCELLING),
    JobState.CANCELLED: (*_RUNNING, JobState.PAUSING, JobState.PAUSED, JobState.CANCELLING, JobState.DEQUEUING),
    JobState.SUCCESS: _FINISHING_FROM,
    JobState.HAS_FAILURES: _FINISHING_FROM,
    JobState.FAILURE: _FINISHING_FROM,
    JobState.SKIPPED: _FINISHING_FROM,
}


class TaskState(models.TextChoices):
    PENDING = "PENDING", "Pending"
    STARTED = "STARTED", "Started"
    SUCCESS = "SUCCESS", "Success"
    ERROR = "ERROR", "Error"
    FAILURE = "FAILURE", "Failure"
    SKIPPED = "SKIPPED", "Skipped"
    CANCELLED = "CANCELLED", "Cancelled"


TASK_TERMINAL = frozenset({TaskState.SUCCESS, TaskState.ERROR, TaskState.FAILURE, TaskState.SKIPPED,
                           TaskState.CANCELLED})
TASK_ACTIVE = frozenset({TaskState.PENDING, TaskState.STARTED})
# A finished task whose processed paths go on to the next step of the chain.
TASK_CONTINUES = frozenset({TaskState.SUCCESS, TaskState.ERROR})
TASK_TRANSITIONS: dict[str, tuple[str, ...]] = {
    TaskState.STARTED: (TaskState.PENDING,),
    # A result may arrive without its STARTED report (reports are not ordered on every broker).
    TaskState.SUCCESS: (TaskState.PENDING, TaskState.STARTED),
    TaskState.ERROR: (TaskState.PENDING, TaskState.STARTED),
    TaskState.FAILURE: (TaskState.PENDING, TaskState.STARTED),
    TaskState.SKIPPED: (TaskState.PENDING,),
    TaskState.CANCELLED: (TaskState.PENDING, TaskState.STARTED),
}


class PathState(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"
    SKIPPED = "skipped", "Skipped"


PATH_FINAL = frozenset({PathState.FAILED, PathState.ABORTED, PathState.SKIPPED})


class LaunchedVia(models.TextChoices):
    MANUAL = "manual", "Manual (web UI)"
    API = "api", "API"
    SCHEDULE = "schedule", "Schedule"
    POLICY = "policy", "Policy"
    RESUBMIT = "resubmit", "Resubmit"


def may_transition(transitions: dict[str, tuple[str, ...]], current: str, new: str) -> bool:
    """Whether ``current`` may become ``new`` under ``transitions``."""
    return current in transitions.get(new, ())
