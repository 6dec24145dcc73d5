"""DIRAC's job states and the legal transitions between them.

The table is the single authority: every status change in central goes through
`check_transition`. The proto enum `gridpilot.v1.JobStatus` mirrors `JobStatus`
one to one (JOB_STATUS_<NAME>), checked by tests/central/models/test_job_states.py.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    SUBMITTING = "Submitting"
    RECEIVED = "Received"
    CHECKING = "Checking"
    SCOUTING = "Scouting"
    STAGING = "Staging"
    WAITING = "Waiting"
    MATCHED = "Matched"
    RUNNING = "Running"
    STALLED = "Stalled"
    COMPLETING = "Completing"
    COMPLETED = "Completed"
    DONE = "Done"
    FAILED = "Failed"
    KILLED = "Killed"
    RESCHEDULED = "Rescheduled"
    DELETED = "Deleted"


S = JobStatus

FINAL_STATES: frozenset[JobStatus] = frozenset({S.DONE, S.COMPLETED, S.FAILED, S.KILLED})

# What may follow each state. Final states may still be rescheduled or deleted by
# their owner, as in DIRAC; Deleted is the end of the line.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.SUBMITTING: frozenset({S.RECEIVED, S.FAILED}),
    S.RECEIVED: frozenset({S.CHECKING, S.WAITING, S.FAILED, S.KILLED, S.DELETED}),
    S.CHECKING: frozenset({S.WAITING, S.STAGING, S.SCOUTING, S.FAILED, S.KILLED, S.DELETED}),
    S.SCOUTING: frozenset({S.CHECKING, S.WAITING, S.FAILED, S.KILLED, S.DELETED}),
    S.STAGING: frozenset({S.CHECKING, S.WAITING, S.FAILED, S.KILLED, S.DELETED}),
    S.WAITING: frozenset({S.MATCHED, S.CHECKING, S.STAGING, S.FAILED, S.KILLED, S.DELETED}),
    S.MATCHED: frozenset({S.RUNNING, S.STALLED, S.RESCHEDULED, S.FAILED, S.KILLED}),
    S.RUNNING: frozenset({S.COMPLETING, S.STALLED, S.DONE, S.FAILED, S.KILLED, S.RESCHEDULED}),
    S.STALLED: frozenset(
        {S.RUNNING, S.COMPLETING, S.DONE, S.COMPLETED, S.FAILED, S.KILLED, S.RESCHEDULED}
    ),
    S.COMPLETING: frozenset({S.DONE, S.COMPLETED, S.STALLED, S.FAILED, S.KILLED, S.RESCHEDULED}),
    S.COMPLETED: frozenset({S.DONE, S.FAILED, S.RESCHEDULED, S.DELETED}),
    S.DONE: frozenset({S.RESCHEDULED, S.DELETED}),
    S.FAILED: frozenset({S.RESCHEDULED, S.DELETED}),
    S.KILLED: frozenset({S.RESCHEDULED, S.DELETED}),
    S.RESCHEDULED: frozenset({S.WAITING, S.RECEIVED, S.FAILED, S.KILLED, S.DELETED}),
    S.DELETED: frozenset(),
}

# DIRAC's MaxRescheduling: the fourth reschedule fails the job instead.
MAX_RESCHEDULING = 3

# States in which a job occupies a pilot slot (heartbeats expected).
ACTIVE_STATES: frozenset[JobStatus] = frozenset({S.MATCHED, S.RUNNING, S.STALLED, S.COMPLETING})


class IllegalTransitionError(ValueError):
    """A status change the state table does not allow."""

    def __init__(self, old: JobStatus, new: JobStatus) -> None:
        super().__init__(f"illegal job status transition {old} -> {new}")
        self.old = old
        self.new = new


def check_transition(old: JobStatus, new: JobStatus) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransitionError(old, new)


def can_transition(old: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[old]
