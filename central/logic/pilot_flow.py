"""The pilot's side: registration, job requests (match + commit), session hello, pilot end."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from central.config import CentralConfig
from central.logic.errors import InvalidArgumentError, NotFoundError
from central.logic.heartbeats import HeartbeatBuffer
from central.logic.pilot_records import pilot_state_allowed
from central.logic.replica_ranking import best_writable_se
from central.logic.sessions import Command, CommandKind, SessionRegistry
from central.logic.storage_elements import StorageElements
from central.logic.submission import decode_spec
from central.logic.transitions import TransitionBatcher, is_active
from central.matcher import Matcher, Resources
from central.models.job_states import JobStatus
from central.models.pilot_states import PilotState
from central.store.interface import Store
from central.store.records import JobFilter, JobRecord, PilotRecord, PilotUpdate, Transition
from gridpilot.logs import get_logger
from gridpilot.v1 import common_pb2

log = get_logger(__name__)

MATCHED_MINOR = "Assigned to pilot"
# A match whose commit finds the job gone (killed, deleted) tries the next one, a bounded number
# of times so a storm of kills cannot keep one request busy.
_MAX_MATCH_TRIES = 50


@dataclass(frozen=True, slots=True)
class Assignment:
    job: JobRecord
    spec: common_pb2.JobSpec
    output_se: str
    failover_ses: list[str]


def _require_site(config: CentralConfig, site: str) -> None:
    if config.site(site) is None:
        raise InvalidArgumentError(f"unknown site {site!r}")


async def register_pilot(
    store: Store,
    config: CentralConfig,
    *,
    pilot_id: str,
    resources: Resources,
    hostname: str,
    now: float,
) -> str:
    """Record the pilot as Running; a pilot started by hand (no id) gets one.

    A fresh pilot counts as idle until its first match: it is free capacity, so a site
    director must not submit another pilot for a job this one is about to take.
    """
    _require_site(config, resources.site)
    pilot_id = pilot_id or f"manual-{uuid.uuid4()}"
    current = await store.get_pilot(pilot_id)
    if current is None:
        await store.insert_pilots(
            [
                PilotRecord(
                    pilot_id=pilot_id,
                    reference=hostname,
                    site=resources.site,
                    ce=resources.ce,
                    queue=resources.queue,
                    backend="manual",
                    director="",
                    state=PilotState.RUNNING,
                    submitted=now,
                    registered=now,
                    last_heartbeat=now,
                    idle_since=now,
                    state_changed=now,
                )
            ]
        )
    else:
        state = (
            PilotState.RUNNING if pilot_state_allowed(current.state, PilotState.RUNNING) else None
        )
        await store.update_pilots(
            [
                PilotUpdate(
                    pilot_id=pilot_id,
                    time=now,
                    state=state,
                    registered=now,
                    last_heartbeat=now,
                    idle=True,
                )
            ]
        )
    log.info("pilot.registered", pilot_id=pilot_id, site=resources.site, host=hostname)
    return pilot_id


def _assignment(
    job: JobRecord, config: CentralConfig, ses: StorageElements, site: str
) -> Assignment:
    spec = decode_spec(job.spec, job.job_id)
    site_cfg = config.site(site)
    output_se = spec.output_se or (site_cfg.default_output_se if site_cfg else "")
    # The site's usual SE is full or down: its outputs go to the next best one instead. An SE
    # the user named stays the destination (a failover copy waits until it takes writes).
    if not spec.output_se and output_se and (refusal := ses.write_refusal(output_se)):
        other = best_writable_se(site, config, ses, exclude=set(config.failover.ses))
        if other is not None:
            log.info(
                "job.output_se_redirected",
                job_id=job.job_id,
                site=site,
                se=output_se,
                to=other,
                reason=refusal,
            )
            output_se = other
    failover = [n for n in ses.writable(config.failover.ses) if n != output_se]
    return Assignment(job=job, spec=spec, output_se=output_se, failover_ses=failover)


async def request_job(
    store: Store,
    matcher: Matcher,
    batcher: TransitionBatcher,
    config: CentralConfig,
    ses: StorageElements,
    *,
    heartbeats: HeartbeatBuffer,
    pilot_id: str,
    resources: Resources,
    now: float,
    site_banned: Callable[[str], bool] | None = None,
) -> Assignment | None:
    """Match a job and commit Waiting -> Matched before answering; None when nothing fits.

    `site_banned` says whether a site is banned now (administrators' bans); without it the
    configuration's flag decides."""
    if not pilot_id:
        raise InvalidArgumentError("job request without a pilot id")
    _require_site(config, resources.site)
    site = config.site(resources.site)
    banned = site_banned(resources.site) if site_banned else site is not None and site.banned
    if banned:
        heartbeats.note_pilot(pilot_id, now, idle=True)
        return None
    for _ in range(_MAX_MATCH_TRIES):
        job_id = matcher.match(resources, now)
        if job_id is None:
            break
        transition = Transition(
            job_id=job_id,
            status=JobStatus.MATCHED,
            minor_status=MATCHED_MINOR,
            source=f"pilot:{pilot_id}",
            time=now,
            expect=(JobStatus.WAITING,),
            pilot_id=pilot_id,
            site=resources.site,
        )
        # Shielded: a caller that goes away mid-commit does not stop the commit, and the
        # matcher's view is settled from its real outcome, not from a guess made before it.
        commit = asyncio.ensure_future(batcher.apply(transition))
        try:
            job = await asyncio.shield(commit)
        except asyncio.CancelledError:
            commit.add_done_callback(
                functools.partial(_settle_abandoned, store, matcher, job_id, resources.site)
            )
            raise
        except Exception:
            # The transaction rolled back: the job is still Waiting.
            await _requeue_after_error(store, matcher, job_id, resources.site)
            raise
        if job is None:
            # Killed or deleted between the match and the commit: the slot the matcher counted
            # for it was never taken; try the next one.
            await _release_uncommitted(store, matcher, job_id, resources.site)
            continue
        heartbeats.note_pilot(pilot_id, now, idle=False)
        # Debug only: this is the hot path (thousands per second).
        log.debug("job.matched", job_id=job_id, pilot_id=pilot_id, site=resources.site)
        return _assignment(job, config, ses, resources.site)
    heartbeats.note_pilot(pilot_id, now, idle=True)
    return None


# Settling tasks of abandoned requests, kept referenced until they finish.
_settling: set[asyncio.Task[None]] = set()


def _settle_abandoned(
    store: Store,
    matcher: Matcher,
    job_id: int,
    site: str,
    commit: asyncio.Future[JobRecord | None],
) -> None:
    """The requester went away; its match committed (nothing to undo: the job is Matched to
    that pilot and will be rescheduled when it stalls), or did not (undo the match)."""
    if commit.cancelled() or commit.exception() is not None:
        coro = _requeue_after_error(store, matcher, job_id, site)
    elif commit.result() is None:
        coro = _release_uncommitted(store, matcher, job_id, site)
    else:
        return
    task = asyncio.ensure_future(coro)
    _settling.add(task)
    task.add_done_callback(_settling.discard)


async def _release_uncommitted(store: Store, matcher: Matcher, job_id: int, site: str) -> None:
    try:
        job = await store.get_job(job_id)
    except Exception:
        log.exception("job.release_failed", job_id=job_id, site=site)
        return
    if job is not None:
        matcher.release(site, job.job_type, job.owner, job.group)


async def _requeue_after_error(store: Store, matcher: Matcher, job_id: int, site: str) -> None:
    """The commit failed (or the caller went away mid-commit): the job may still be Waiting."""
    try:
        job = await store.get_job(job_id)
    except Exception:
        log.exception("job.requeue_failed", job_id=job_id)
        return
    if job is not None and job.status == JobStatus.WAITING:
        # Not matched after all: give back the slot counted at match time, and requeue.
        matcher.release(site, job.job_type, job.owner, job.group)
        matcher.add(job.job_id, job.priority, job.owner, job.group, job.requirements)


async def session_hello(
    store: Store,
    sessions: SessionRegistry,
    heartbeats: HeartbeatBuffer,
    *,
    pilot_id: str,
    running_job_ids: list[int],
    now: float,
) -> int:
    """After a (re)connect: resend kills for jobs the pilot should not be running any more."""
    heartbeats.note_pilot(pilot_id, now)
    if not running_job_ids:
        return 0
    jobs = {j.job_id: j for j in await store.list_jobs(JobFilter(job_ids=tuple(running_job_ids)))}
    sent = 0
    for job_id in running_job_ids:
        job = jobs.get(job_id)
        if job is None or job.pilot_id != pilot_id or not is_active(job):
            reason = "job no longer assigned to this pilot"
        elif job.kill_requested:
            reason = "killed by user"
        else:
            continue
        sessions.send(pilot_id, Command(CommandKind.KILL_JOB, job_id, reason))
        sent += 1
    return sent


async def report_pilot_end(
    store: Store,
    pilot_id: str,
    reason: str,
    jobs_run: int,
    now: float,
) -> None:
    current = await store.get_pilot(pilot_id)
    if current is None:
        raise NotFoundError(f"pilot {pilot_id!r} is not known")
    state = PilotState.DONE if pilot_state_allowed(current.state, PilotState.DONE) else None
    await store.update_pilots(
        [
            PilotUpdate(
                pilot_id=pilot_id,
                time=now,
                state=state,
                status_reason=reason,
                jobs_run=jobs_run,
                idle=False,
            )
        ]
    )
    log.info("pilot.ended", pilot_id=pilot_id, reason=reason, jobs_run=jobs_run)
