"""Job reports from wrappers and pilots: status updates and the final report of an attempt."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from central.logic.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from central.logic.storage_elements import StorageElements
from central.logic.transitions import end_lost_attempt
from central.matcher import Matcher
from central.models.job_states import ACTIVE_STATES, JobStatus, can_transition
from central.store.interface import Store
from central.store.records import (
    FileRecord,
    JobRecord,
    NewFailoverRequest,
    OutputRecord,
    Transition,
)
from gridpilot.logs import get_logger

log = get_logger(__name__)

S = JobStatus

PENDING_REQUESTS_MINOR = "Pending Requests"
PILOT_TERMINATED_MINOR = "Pilot terminated: job rescheduled"
DONE_MINOR = "Execution Complete"

# Statuses a running attempt may report on its way (the final one comes via finish_job).
REPORTABLE: frozenset[JobStatus] = frozenset({S.RUNNING, S.COMPLETING})


class ExitCategory(StrEnum):
    SUCCESS = "Success"
    APPLICATION_ERROR = "Application error"
    INPUT_DATA_UNAVAILABLE = "Input data unavailable"
    UPLOAD_FAILED = "Upload failed"
    WATCHDOG_KILL = "Watchdog kill"
    KILLED = "Killed"
    WRAPPER_ERROR = "Wrapper error"
    # Not a result of the job: the pilot was stopped (SIGTERM from its batch system).
    PILOT_TERMINATED = "Pilot terminated"


# How each non-success ending maps onto the job: (status, minor status).
_FINAL_STATUS: dict[ExitCategory, tuple[JobStatus, str]] = {
    ExitCategory.APPLICATION_ERROR: (S.FAILED, "Application Finished With Errors"),
    ExitCategory.INPUT_DATA_UNAVAILABLE: (S.FAILED, "Input Data Not Available"),
    ExitCategory.UPLOAD_FAILED: (S.FAILED, "Uploading Job Outputs Failed"),
    ExitCategory.WATCHDOG_KILL: (S.FAILED, "Killed by Watchdog"),
    ExitCategory.WRAPPER_ERROR: (S.FAILED, "Job Wrapper Error"),
    ExitCategory.KILLED: (S.KILLED, "Killed by user"),
}


@dataclass(frozen=True, slots=True)
class ReportedOutput:
    lfn: str
    se: str
    size: int
    adler32: str
    # Set when the file sits on a failover SE and must be replicated to this one.
    destination_se: str = ""


@dataclass(frozen=True, slots=True)
class FinishReport:
    job_id: int
    attempt: int
    category: ExitCategory
    exit_code: int = 0
    message: str = ""
    output_sandbox: str = ""
    outputs: Sequence[ReportedOutput] = field(default_factory=tuple)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


async def _current_attempt(store: Store, job_id: int, attempt: int) -> JobRecord:
    job = await store.get_job(job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    if job.attempt != attempt:
        raise FailedPreconditionError(
            f"job {job_id}: attempt {attempt} is not the current attempt {job.attempt}; "
            "report refused"
        )
    if job.status not in ACTIVE_STATES:
        raise FailedPreconditionError(f"job {job_id} is {job.status}; report refused")
    return job


async def report_status(
    store: Store,
    *,
    job_id: int,
    attempt: int,
    status: JobStatus,
    minor_status: str,
    application_status: str,
    now: float,
) -> JobRecord:
    if status not in REPORTABLE:
        raise InvalidArgumentError(
            f"status {status} cannot be reported by a job (only Running or Completing)"
        )
    transition = Transition(
        job_id=job_id,
        status=status,
        minor_status=minor_status,
        application_status=application_status or None,
        source="JobWrapper",
        time=now,
        expect=_one_step_to(status),
        expect_attempt=attempt,
    )
    (after,) = await store.apply_transitions([transition])
    if after is not None:
        return after
    # Refused: read the job to say why, or to record the steps the wrapper skipped.
    job = await _current_attempt(store, job_id, attempt)
    if job.status != status:
        job = await _step_towards(store, job, status, now)
    transition = msgspec.structs.replace(transition, expect=(job.status,))
    (after,) = await store.apply_transitions([transition])
    if after is None:
        raise FailedPreconditionError(
            f"job {job_id} cannot go from {job.status} to {status}; report refused"
        )
    return after


def _final_status(
    report: FinishReport, requests: list[NewFailoverRequest]
) -> tuple[JobStatus, str, str]:
    """(status, minor status, application status) of a finished attempt."""
    if report.category == ExitCategory.SUCCESS:
        if requests:
            return S.COMPLETED, PENDING_REQUESTS_MINOR, report.message
        return S.DONE, DONE_MINOR, report.message
    status, minor = _FINAL_STATUS[report.category]
    app = report.message or f"exit code {report.exit_code}"
    return status, minor, app


async def finish_job(
    store: Store, ses: StorageElements, report: FinishReport, now: float
) -> JobRecord:
    """Record how the attempt ended, its outputs, their replicas and failover requests at once."""
    if report.category == ExitCategory.PILOT_TERMINATED:
        raise ValueError("a terminated pilot's report goes to end_terminated_attempt")
    for out in report.outputs:
        if not out.lfn.startswith("/"):
            raise InvalidArgumentError(f"output LFN {out.lfn!r} must start with '/'")
        ses.require(out.se)
        if out.destination_se:
            ses.require(out.destination_se)
    job_id, attempt = report.job_id, report.attempt
    requests = [
        NewFailoverRequest(job_id=job_id, lfn=o.lfn, source_se=o.se, target_se=o.destination_se)
        for o in report.outputs
        if o.destination_se and o.destination_se != o.se
    ]
    status, minor, app = _final_status(report, requests)
    transition = Transition(
        job_id=job_id,
        status=status,
        minor_status=minor,
        application_status=app,
        source="JobWrapper",
        time=now,
        expect=_one_step_to(status),
        expect_attempt=attempt,
        output_sandbox=report.output_sandbox or None,
        kill_requested=False,
    )
    outputs = [
        OutputRecord(
            job_id=job_id, attempt=attempt, lfn=o.lfn, se=o.se, size=o.size, adler32=o.adler32
        )
        for o in report.outputs
    ]
    files = [
        FileRecord(lfn=o.lfn, size=o.size, adler32=o.adler32, ses=(o.se,), job_id=job_id)
        for o in report.outputs
    ]
    try:
        after = await store.finish_attempt(transition, outputs, files, requests)
        if after is None:
            # Refused (nothing written): read the job to say why, or to record the steps
            # the wrapper skipped (Matched -> Done), then finish from where it is.
            job = await _current_attempt(store, job_id, attempt)
            job = await _step_towards(store, job, status, now)
            transition = msgspec.structs.replace(transition, expect=(job.status,))
            after = await store.finish_attempt(transition, outputs, files, requests)
    except ValueError as exc:
        raise InvalidArgumentError(f"job {job_id}: {exc}") from exc
    if after is None:
        raise FailedPreconditionError(f"job {job_id} changed state meanwhile; report refused")
    # Debug only: one per job, thousands per second under load.
    log.debug(
        "job.finished",
        job_id=job_id,
        attempt=attempt,
        status=after.status.value,
        category=report.category.value,
        outputs=len(outputs),
        requests=len(requests),
    )
    return after


async def end_terminated_attempt(
    store: Store, matcher: Matcher, report: FinishReport, *, max_rescheduling: int, now: float
) -> JobRecord:
    """The pilot was stopped while the attempt ran: the job is not to blame, so it takes the
    stalled agent's path (Rescheduled -> Waiting with attempt + 1, Failed after
    `max_rescheduling` reschedules, Killed if a kill was requested) without waiting to stall."""
    job = await _current_attempt(store, report.job_id, report.attempt)
    source = f"pilot:{job.pilot_id}" if job.pilot_id else "Pilot"
    outcome, transitions = end_lost_attempt(
        job,
        now,
        source,
        reason=PILOT_TERMINATED_MINOR,
        kill_minor="Killed by user",
        max_rescheduling=max_rescheduling,
    )
    results = await store.apply_transitions(transitions)
    after = results[-1]
    if after is None or any(r is None for r in results):
        raise FailedPreconditionError(f"job {job.job_id} changed state meanwhile; report refused")
    if outcome == "rescheduled":
        matcher.add(after.job_id, after.priority, after.owner, after.group, after.requirements)
    log.info(
        "job." + outcome,
        job_id=job.job_id,
        attempt=after.attempt,
        source=source,
        reason=report.message,
    )
    return after


@functools.cache
def _one_step_to(target: JobStatus) -> tuple[JobStatus, ...]:
    """The active statuses a job may go to `target` from in one legal step (or stay in it).

    Reports are applied first as one write expecting these (the common case: one store round
    trip, no read); only a refused one reads the job."""
    return tuple(sorted(s for s in ACTIVE_STATES if s == target or can_transition(s, target)))


def _intermediates(current: JobStatus, target: JobStatus) -> list[JobStatus]:
    """Statuses to pass through (Running, Completing) so the state table allows `target`."""
    if can_transition(current, target):
        return []
    for path in ([S.RUNNING], [S.COMPLETING], [S.RUNNING, S.COMPLETING]):
        steps = [current, *path, target]
        if all(can_transition(a, b) for a, b in itertools.pairwise(steps)):
            return path
    raise FailedPreconditionError(f"a {current} job cannot become {target}; report refused")


async def _step_towards(store: Store, job: JobRecord, target: JobStatus, now: float) -> JobRecord:
    """A wrapper may finish without having reported every step (e.g. Matched -> Done): record
    the missing steps, so the history stays a legal path through the state table."""
    path = _intermediates(job.status, target)
    if not path:
        return job
    transitions = []
    previous = job.status
    for status in path:
        transitions.append(
            Transition(
                job_id=job.job_id,
                status=status,
                minor_status=job.minor_status,
                source="JobWrapper",
                time=now,
                expect=(previous,),
                expect_attempt=job.attempt,
            )
        )
        previous = status
    results = await store.apply_transitions(transitions)
    after = results[-1]
    if after is None or any(r is None for r in results):
        raise FailedPreconditionError(f"job {job.job_id} changed state meanwhile; report refused")
    return after


async def complete_if_requests_done(store: Store, job_id: int, now: float) -> JobRecord | None:
    """A Completed "Pending Requests" job whose last request ended goes Done (or Failed)."""
    requests = await store.list_failover_requests(job_id)
    if not requests or any(r.status == "Waiting" for r in requests):
        return None
    failed = [r for r in requests if r.status == "Failed"]
    status, minor = (S.FAILED, "Failover requests failed") if failed else (S.DONE, DONE_MINOR)
    (after,) = await store.apply_transitions(
        [
            Transition(
                job_id=job_id,
                status=status,
                minor_status=minor,
                source="FailoverAgent",
                time=now,
                expect=(S.COMPLETED,),
            )
        ]
    )
    if after is not None:
        log.info("job.requests_done", job_id=job_id, status=status.value)
    return after
