"""Jobs that stopped sending heartbeats: Stalled, then Rescheduled (or Failed, or Killed)."""

from __future__ import annotations

from dataclasses import dataclass

from central.config import CentralConfig
from central.logic.heartbeats import HeartbeatBuffer
from central.logic.sessions import Command, CommandKind, SessionRegistry
from central.logic.transitions import end_lost_attempt, kill_transition
from central.matcher import Matcher
from central.models.job_states import JobStatus
from central.store.interface import Store
from central.store.records import JobRecord, Transition
from gridpilot.logs import get_logger

log = get_logger(__name__)

S = JobStatus
SOURCE = "StalledJobAgent"
STALLED_MINOR = "Job stalled: no heartbeat"
NO_ANSWER_KILL_MINOR = "Killed: no answer after kill request"


@dataclass(slots=True)
class StalledReport:
    stalled: int = 0
    rescheduled: int = 0
    failed: int = 0
    killed: int = 0


def _stall(job: JobRecord, now: float) -> Transition:
    return Transition(
        job_id=job.job_id,
        status=S.STALLED,
        minor_status=STALLED_MINOR,
        source=SOURCE,
        time=now,
        expect=(job.status,),
        expect_attempt=job.attempt,
    )


def _settle(job: JobRecord, now: float, max_rescheduling: int) -> tuple[str, list[Transition]]:
    """What to do with a job quiet for good: (outcome, transitions)."""
    return end_lost_attempt(
        job,
        now,
        SOURCE,
        reason="Stalled job rescheduled",
        kill_minor=NO_ANSWER_KILL_MINOR,
        max_rescheduling=max_rescheduling,
    )


async def check_stalled_jobs(
    store: Store,
    matcher: Matcher,
    heartbeats: HeartbeatBuffer,
    sessions: SessionRegistry,
    config: CentralConfig,
    *,
    now: float,
) -> StalledReport:
    c = config.central
    # Buffered beats first, or a live job could be declared stalled.
    await heartbeats.flush(now)
    report = StalledReport()

    quiet = await store.jobs_quiet_since(
        (S.MATCHED, S.RUNNING, S.COMPLETING), now - c.stalled_after
    )
    # A kill-requested job that goes quiet is dead: Killed straight away, not Stalled.
    plans: list[tuple[JobRecord, str, list[Transition]]] = [
        (job, "killed", [kill_transition(job, now, SOURCE, NO_ANSWER_KILL_MINOR)])
        if job.kill_requested
        else (job, "stalled", [_stall(job, now)])
        for job in quiet
    ]
    # Stalled jobs: quiet since they went Stalled (their `updated`) for reschedule_stalled_after.
    cutoff = now - c.reschedule_stalled_after
    for job in await store.jobs_quiet_since((S.STALLED,), cutoff):
        if job.updated < cutoff:
            outcome, transitions = _settle(job, now, c.max_rescheduling)
            plans.append((job, outcome, transitions))

    flat = [t for _, _, ts in plans for t in ts]
    results = iter(await store.apply_transitions(flat))
    for job, outcome, transitions in plans:
        applied = [next(results) for _ in transitions]
        after = applied[-1]
        if after is None or any(r is None for r in applied):
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
        log.info("job." + outcome, job_id=job.job_id, attempt=after.attempt, source=SOURCE)
        if outcome == "rescheduled":
            matcher.add(after.job_id, after.priority, after.owner, after.group, after.requirements)
        if outcome != "stalled" and job.pilot_id:
            # A pilot still connected but with a hung wrapper must stop the old attempt.
            sessions.send(job.pilot_id, Command(CommandKind.KILL_JOB, job.job_id, outcome))
    return report
