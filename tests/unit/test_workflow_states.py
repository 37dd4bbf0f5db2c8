"""The state tables of ``workflows.states``: every legal transition, a set of illegal ones, terminal
states that stay terminal, and the planner's plain-string copies of the state names.

No database: these are the tables the models' conditional updates are filtered on.
"""

from __future__ import annotations

from typing import get_args

import pytest

from agent.contract import PathStatus
from workflows import dag
from workflows.states import (
    JOB_ACTIVE,
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    TASK_ACTIVE,
    TASK_CONTINUES,
    TASK_TERMINAL,
    TASK_TRANSITIONS,
    JobState,
    PathState,
    TaskState,
    may_transition,
)

J, T = JobState, TaskState

LEGAL_JOB = [(old, new) for new, olds in JOB_TRANSITIONS.items() for old in olds]
LEGAL_TASK = [(old, new) for new, olds in TASK_TRANSITIONS.items() for old in olds]

ILLEGAL_JOB = [
    (J.STARTED, J.PENDING),  # a started job never goes back to Pending (only a resume does)
    (J.STARTED, J.STARTED),
    (J.FAILING, J.STARTED),  # a failure, once seen, stays visible
    (J.PAUSING, J.PAUSING),
    (J.CANCELLING, J.STARTED),  # a cancel is never undone
    (J.CANCELLING, J.PAUSED),
    (J.CANCELLING, J.PAUSING),
    (J.CANCELLING, J.SUCCESS),  # a cancelled job ends Cancelled, whatever finished meanwhile
    (J.DEQUEUING, J.SUCCESS),
    (J.DEQUEUING, J.FAILURE),
    (J.PENDING, J.PENDING),
    (J.SUCCESS, J.STARTED),
    (J.SUCCESS, J.FAILURE),
    (J.HAS_FAILURES, J.SUCCESS),
    (J.FAILURE, J.STARTED),
    (J.SKIPPED, J.SUCCESS),
    (J.CANCELLED, J.STARTED),
    (J.CANCELLED, J.CANCELLING),
]
ILLEGAL_TASK = [
    (T.STARTED, T.PENDING),
    (T.STARTED, T.STARTED),
    (T.STARTED, T.SKIPPED),  # a task that started did something: it cannot be "nothing reached it"
    (T.SUCCESS, T.FAILURE),  # two workers finishing the same task: the second report loses
    (T.FAILURE, T.SUCCESS),
    (T.ERROR, T.SUCCESS),
    (T.SUCCESS, T.CANCELLED),
    (T.SKIPPED, T.STARTED),
    (T.CANCELLED, T.STARTED),  # a late STARTED report after a cancel
    (T.CANCELLED, T.SUCCESS),
]


@pytest.mark.parametrize(("old", "new"), LEGAL_JOB, ids=[f"{o}->{n}" for o, n in LEGAL_JOB])
def test_every_job_transition_in_the_table_is_legal(old, new):
    assert may_transition(JOB_TRANSITIONS, old, new)


@pytest.mark.parametrize(("old", "new"), ILLEGAL_JOB, ids=[f"{o}->{n}" for o, n in ILLEGAL_JOB])
def test_illegal_job_transitions_are_rejected(old, new):
    assert not may_transition(JOB_TRANSITIONS, old, new)


@pytest.mark.parametrize(("old", "new"), LEGAL_TASK, ids=[f"{o}->{n}" for o, n in LEGAL_TASK])
def test_every_task_transition_in_the_table_is_legal(old, new):
    assert may_transition(TASK_TRANSITIONS, old, new)


@pytest.mark.parametrize(("old", "new"), ILLEGAL_TASK, ids=[f"{o}->{n}" for o, n in ILLEGAL_TASK])
def test_illegal_task_transitions_are_rejected(old, new):
    assert not may_transition(TASK_TRANSITIONS, old, new)


def test_unknown_states_never_transition():
    assert not may_transition(JOB_TRANSITIONS, "RUNNING", J.SUCCESS)
    assert not may_transition(TASK_TRANSITIONS, T.PENDING, "DONE")


@pytest.mark.parametrize(("terminal", "states", "table"), [
    *[(s, JobState, JOB_TRANSITIONS) for s in sorted(JOB_TERMINAL)],
    *[(s, TaskState, TASK_TRANSITIONS) for s in sorted(TASK_TERMINAL)],
])
def test_terminal_states_have_no_outgoing_transition(terminal, states, table):
    assert [new for new in states if may_transition(table, terminal, new)] == []


def test_active_and_terminal_sets_partition_the_states():
    assert JOB_ACTIVE | JOB_TERMINAL == set(JobState) and not JOB_ACTIVE & JOB_TERMINAL
    assert TASK_ACTIVE | TASK_TERMINAL == set(TaskState) and not TASK_ACTIVE & TASK_TERMINAL


def test_tables_name_only_known_states():
    for table, states in ((JOB_TRANSITIONS, set(JobState)), (TASK_TRANSITIONS, set(TaskState))):
        assert set(table) <= states
        assert {old for olds in table.values() for old in olds} <= states


@pytest.mark.parametrize("state", sorted(JOB_ACTIVE))
def test_every_active_job_state_can_end(state):
    """No job can be stuck: from every active state some terminal state is one step away."""
    assert any(may_transition(JOB_TRANSITIONS, state, end) for end in JOB_TERMINAL)


@pytest.mark.parametrize("state", sorted(TASK_ACTIVE))
def test_every_active_task_state_can_end(state):
    assert any(may_transition(TASK_TRANSITIONS, state, end) for end in TASK_TERMINAL)


def test_every_state_but_the_initial_one_can_be_reached():
    assert set(JobState) - {J.PENDING} <= set(JOB_TRANSITIONS)
    assert set(TaskState) - {T.PENDING} <= set(TASK_TRANSITIONS)


# --- the planner's copies ------------------------------------------------------------------------

@pytest.mark.parametrize(("prefix", "choices"), [("JOB", JobState), ("TASK", TaskState), ("PATH", PathState)])
def test_dag_constants_equal_the_text_choices(prefix, choices):
    copies = {name.removeprefix(f"{prefix}_"): value for name, value in vars(dag).items()
              if name.startswith(f"{prefix}_") and isinstance(value, str)}
    assert copies == {member.name: member.value for member in choices}


def test_dag_agrees_on_which_finished_tasks_continue_a_chain():
    assert dag.TASK_CONTINUES == {s.value for s in TASK_CONTINUES}
    assert dag.TASK_STOPS_CHAIN == {s.value for s in TASK_TERMINAL - TASK_CONTINUES}


def test_path_states_are_the_agents_statuses_plus_pending():
    assert {s.value for s in PathState} == set(get_args(PathStatus)) | {PathState.PENDING.value}
