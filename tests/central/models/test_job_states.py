"""The job state transition table."""

from __future__ import annotations

import itertools

import pytest

from central.models.job_states import (
    ACTIVE_STATES,
    FINAL_STATES,
    MAX_RESCHEDULING,
    TRANSITIONS,
    IllegalTransitionError,
    JobStatus,
    can_transition,
    check_transition,
)

S = JobStatus

LEGAL_PATHS = [
    # DIRAC's happy path.
    [S.WAITING, S.MATCHED, S.RUNNING, S.COMPLETING, S.DONE],
    # Output left on a failover SE: Completed until the request is done.
    [S.RUNNING, S.COMPLETING, S.COMPLETED, S.DONE],
    # Missing heartbeats, then one arrives.
    [S.RUNNING, S.STALLED, S.RUNNING],
    # Still quiet: rescheduled with a new attempt.
    [S.MATCHED, S.STALLED, S.RESCHEDULED, S.WAITING],
    # Submission pipeline.
    [S.SUBMITTING, S.RECEIVED, S.CHECKING, S.STAGING, S.WAITING],
    # Owner actions on finished jobs.
    [S.FAILED, S.RESCHEDULED, S.WAITING, S.KILLED, S.DELETED],
    [S.DONE, S.DELETED],
]

ILLEGAL = [
    (S.WAITING, S.DONE),
    (S.WAITING, S.RUNNING),
    (S.MATCHED, S.WAITING),
    (S.MATCHED, S.COMPLETING),
    (S.RUNNING, S.WAITING),
    (S.RUNNING, S.COMPLETED),
    (S.DONE, S.RUNNING),
    (S.KILLED, S.WAITING),
    (S.FAILED, S.DONE),
    (S.RUNNING, S.DELETED),
    (S.DELETED, S.WAITING),
    (S.RESCHEDULED, S.RUNNING),
]


def test_every_state_has_a_row_and_only_states_appear() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    for targets in TRANSITIONS.values():
        assert all(isinstance(t, JobStatus) for t in targets)


@pytest.mark.parametrize("path", LEGAL_PATHS, ids=lambda p: "->".join(s.value for s in p))
def test_legal_paths(path: list[JobStatus]) -> None:
    for old, new in itertools.pairwise(path):
        check_transition(old, new)
        assert can_transition(old, new)


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transitions_raise(old: JobStatus, new: JobStatus) -> None:
    assert not can_transition(old, new)
    with pytest.raises(IllegalTransitionError) as err:
        check_transition(old, new)
    assert (err.value.old, err.value.new) == (old, new)
    assert str(err.value) == f"illegal job status transition {old} -> {new}"
    assert isinstance(err.value, ValueError)


def test_can_transition_agrees_with_check_transition() -> None:
    for old, new in itertools.product(JobStatus, JobStatus):
        try:
            check_transition(old, new)
            legal = True
        except IllegalTransitionError:
            legal = False
        assert legal == can_transition(old, new), (old, new)


def test_final_states() -> None:
    assert {S.DONE, S.COMPLETED, S.FAILED, S.KILLED} == FINAL_STATES
    # A finished job never runs again in place: only a reschedule (new attempt) or deletion,
    # and a Completed job may still end Done or Failed once its requests finish.
    for state in FINAL_STATES:
        assert TRANSITIONS[state] <= {S.DONE, S.FAILED, S.RESCHEDULED, S.DELETED}
        assert not TRANSITIONS[state] & ACTIVE_STATES
    assert TRANSITIONS[S.DELETED] == frozenset()


def test_no_state_is_a_dead_end_and_all_are_reachable() -> None:
    def reachable(start: JobStatus) -> set[JobStatus]:
        seen = {start}
        todo = [start]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reachable(S.SUBMITTING) == set(JobStatus)
    for state in set(JobStatus) - {S.DELETED}:
        assert reachable(state) & FINAL_STATES, state


def test_active_states_and_rescheduling_limit() -> None:
    assert {S.MATCHED, S.RUNNING, S.STALLED, S.COMPLETING} == ACTIVE_STATES
    assert MAX_RESCHEDULING == 3
    for state in ACTIVE_STATES:
        assert can_transition(state, S.STALLED) or state is S.STALLED
        assert can_transition(state, S.KILLED)
        assert can_transition(state, S.RESCHEDULED)
