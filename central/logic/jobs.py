"""User-facing job queries and bulk actions: list, get, kill, delete, reschedule, summarize."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from central.config import CentralConfig
from central.logic.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from central.logic.identity import Caller
from central.logic.sessions import Command, CommandKind, SessionRegistry
from central.logic.transitions import is_active, kill_transition, reschedule_transitions
from central.matcher import Matcher
from central.models.job_states import FINAL_STATES, JobStatus, can_transition
from central.store.interface import Store
from central.store.records import (
    HeartbeatRecord,
    HistoryRecord,
    JobFilter,
    JobRecord,
    OutputRecord,
    Transition,
)
from gridpilot.logs import get_logger

log = get_logger(__name__)

S = JobStatus

KILL_MINOR = "Marked for termination"


@dataclass(frozen=True, slots=True)
class ActionResult:
    job_id: int
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class JobDetails:
    job: JobRecord
    history: list[HistoryRecord]
    heartbeat: HeartbeatRecord | None
    outputs: list[OutputRecord]


@dataclass(slots=True)
class ProjectSummary:
    project: str
    owner: str
    counts: dict[JobStatus, int] = field(default_factory=dict)
    first_submitted: float = 0.0


def _check_owner(caller: Caller, owner: str, verb: str) -> None:
    """Asking for another person's jobs by name: only administrators, production managers
    (their production jobs) and members of a job-sharing group can get anything."""
    if not owner or owner == caller.subject or caller.is_admin:
        return
    if verb == "see" and (caller.is_production or caller.job_sharing):
        return
    if verb != "see" and caller.is_production:
        return
    raise PermissionDeniedError(f"{caller.describe()} may not {verb} jobs of {owner!r}")


async def list_jobs(
    store: Store, caller: Caller, where: JobFilter, limit: int = 0
) -> list[JobRecord]:
    if limit < 0:
        raise InvalidArgumentError(f"limit {limit} is negative")
    _check_owner(caller, where.owner, "see")
    return await store.list_jobs(msgspec.structs.replace(where, scope=caller.see_scope()), limit)


async def get_job(store: Store, caller: Caller, job_id: int) -> JobDetails:
    job = await store.get_job(job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    if not caller.may_see(job):
        raise PermissionDeniedError(f"{caller.describe()} may not see job {job_id}")
    return JobDetails(
        job=job,
        history=await store.job_history(job_id),
        heartbeat=await store.last_heartbeat(job_id),
        outputs=await store.job_outputs(job_id),
    )


async def select_for_action(
    store: Store, caller: Caller, where: JobFilter, verb: str
) -> list[JobRecord]:
    """The jobs of a bulk action: never "everything"; without ids, only jobs the caller may
    manage; with ids, every one must be the caller's to manage, or nothing is done."""
    if not (where.project or where.job_ids or where.owner or where.site or where.statuses):
        raise InvalidArgumentError("select jobs by id, project, owner, site or status")
    _check_owner(caller, where.owner, verb)
    if where.job_ids:
        jobs = await store.list_jobs(where)
        denied = [job for job in jobs if not caller.may_manage(job)]
        if denied:
            shown = ", ".join(f"{j.job_id} (owner {j.owner})" for j in denied[:10])
            raise PermissionDeniedError(f"{caller.describe()} may not {verb} job(s) {shown}")
        return jobs
    return await store.list_jobs(msgspec.structs.replace(where, scope=caller.manage_scope()))


# A plan says, for one job, which transitions to apply or why nothing can be done.
_Plan = tuple[list[Transition], str]


async def _bulk_action(
    store: Store,
    jobs: list[JobRecord],
    caller: Caller,
    plan: Callable[[JobRecord], _Plan],
) -> list[tuple[JobRecord, JobRecord | None, str]]:
    """Apply each job's plan in one transaction; returns (before, after or None, message)."""
    planned: list[tuple[JobRecord, list[Transition], str]] = []
    for job in jobs:
        if not caller.may_manage(job):
            # select_for_action refused these already; kept so no path can skip the check.
            raise PermissionDeniedError(f"{caller.describe()} may not act on job {job.job_id}")
        transitions, message = plan(job)
        planned.append((job, transitions, message))
    flat = [t for _, ts, _ in planned for t in ts]
    results = iter(await store.apply_transitions(flat))
    outcome: list[tuple[JobRecord, JobRecord | None, str]] = []
    for job, transitions, planned_message in planned:
        after: JobRecord | None = None
        message = planned_message
        applied = [next(results) for _ in transitions]
        if transitions and all(r is not None for r in applied):
            after = applied[-1]
        elif transitions:
            message = "job changed state meanwhile; try again"
        outcome.append((job, after, message))
    return outcome


def _results(outcome: list[tuple[JobRecord, JobRecord | None, str]]) -> list[ActionResult]:
    return [ActionResult(job.job_id, after is not None, msg) for job, after, msg in outcome]


async def kill_jobs(
    store: Store,
    matcher: Matcher,
    sessions: SessionRegistry,
    *,
    caller: Caller,
    where: JobFilter,
    now: float,
) -> list[ActionResult]:
    source = caller.source

    def plan(job: JobRecord) -> _Plan:
        if job.status in FINAL_STATES:
            return [], f"job is already {job.status}"
        if job.kill_requested:
            return [], "kill already requested"
        if is_active(job) and job.status != S.STALLED:
            # The pilot kills the process tree and reports Killed; until then it stays active.
            mark = Transition(
                job_id=job.job_id,
                status=job.status,
                minor_status=KILL_MINOR,
                source=source,
                time=now,
                expect=(job.status,),
                expect_attempt=job.attempt,
                kill_requested=True,
            )
            return [mark], KILL_MINOR
        if can_transition(job.status, S.KILLED):
            return [kill_transition(job, now, source, "Killed by user")], "killed"
        return [], f"a {job.status} job cannot be killed"

    jobs = await select_for_action(store, caller, where, "kill")
    for job in jobs:
        if not is_active(job):
            # Out of the matcher before the commit, so no pilot gets it in between.
            matcher.remove(job.job_id)
    outcome = await _bulk_action(store, jobs, caller, plan)
    for before, after, _ in outcome:
        if after is None:
            if before.status == S.WAITING and not before.kill_requested:
                # Not killed after all (permission, race): it is still waiting.
                fresh = await store.get_job(before.job_id)
                if fresh is not None and fresh.status == S.WAITING:
                    matcher.add(
                        fresh.job_id, fresh.priority, fresh.owner, fresh.group, fresh.requirements
                    )
            continue
        if is_active(before) and before.pilot_id:
            # A marked job waits for the pilot's report; a Stalled one is Killed already, but
            # its pilot may still be alive with a hung wrapper.
            kill = Command(CommandKind.KILL_JOB, before.job_id, "killed by user")
            sessions.send(before.pilot_id, kill)
        log.info("job.kill", job_id=after.job_id, status=after.status.value, user=caller.user)
    return _results(outcome)


async def delete_jobs(
    store: Store, matcher: Matcher, *, caller: Caller, where: JobFilter, now: float
) -> list[ActionResult]:
    source = caller.source

    def plan(job: JobRecord) -> _Plan:
        if is_active(job):
            return [], f"job is {job.status}; kill it first"
        if not can_transition(job.status, S.DELETED):
            return [], f"a {job.status} job cannot be deleted"
        t = Transition(
            job_id=job.job_id,
            status=S.DELETED,
            minor_status="Deleted by user",
            source=source,
            time=now,
            expect=(job.status,),
            expect_attempt=job.attempt,
        )
        return [t], "deleted"

    jobs = await select_for_action(store, caller, where, "delete")
    outcome = await _bulk_action(store, jobs, caller, plan)
    for _, after, _ in outcome:
        if after is not None:
            matcher.remove(after.job_id)
    return _results(outcome)


async def reschedule_jobs(
    store: Store,
    matcher: Matcher,
    sessions: SessionRegistry,
    config: CentralConfig,
    *,
    caller: Caller,
    where: JobFilter,
    now: float,
) -> list[ActionResult]:
    source = caller.source
    limit = config.central.max_rescheduling

    def plan(job: JobRecord) -> _Plan:
        if not can_transition(job.status, S.RESCHEDULED):
            return [], f"a {job.status} job cannot be rescheduled"
        if job.reschedule_count >= limit:
            return [], f"Maximum of reschedulings reached ({limit})"
        return reschedule_transitions(job, now, source, "Job Rescheduled"), "rescheduled"

    jobs = await select_for_action(store, caller, where, "reschedule")
    outcome = await _bulk_action(store, jobs, caller, plan)
    for before, after, _ in outcome:
        if after is None:
            continue
        matcher.add(after.job_id, after.priority, after.owner, after.group, after.requirements)
        if is_active(before) and before.pilot_id:
            # The old attempt's reports will be refused; stop it wasting the slot.
            sessions.send(
                before.pilot_id, Command(CommandKind.KILL_JOB, before.job_id, "job rescheduled")
            )
        log.info("job.rescheduled", job_id=after.job_id, attempt=after.attempt, user=caller.user)
    return _results(outcome)


async def summarize_projects(
    store: Store, caller: Caller, project: str, owner: str
) -> list[ProjectSummary]:
    # Without an explicit owner a user sees what they may see; admins see everyone's.
    _check_owner(caller, owner, "see")
    rows = await store.summarize_projects(
        JobFilter(project=project, owner=owner, scope=caller.see_scope())
    )
    summaries: dict[tuple[str, str], ProjectSummary] = {}
    for row in rows:
        key = (row.project, row.owner)
        summary = summaries.get(key)
        if summary is None:
            summary = summaries[key] = ProjectSummary(row.project, row.owner)
        summary.counts[row.status] = summary.counts.get(row.status, 0) + row.count
        if not summary.first_submitted or row.first_submitted < summary.first_submitted:
            summary.first_submitted = row.first_submitted
    return list(summaries.values())
