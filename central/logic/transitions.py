"""Transition builders shared by user actions and agents, and group commit of transitions."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from central.models.job_states import ACTIVE_STATES, JobStatus
from central.store.interface import Store
from central.store.records import JobRecord, Transition

S = JobStatus

MAX_RESCHEDULING_MINOR = "Maximum of reschedulings reached"


def reschedule_transitions(
    job: JobRecord, now: float, source: str, reason: str
) -> list[Transition]:
    """Job -> Rescheduled -> Waiting with a new attempt, applied together in one transaction.

    The second step expects the new attempt, so it cannot apply if the first did not.
    """
    attempt = job.attempt + 1
    return [
        Transition(
            job_id=job.job_id,
            status=S.RESCHEDULED,
            minor_status=reason,
            source=source,
            time=now,
            expect=(job.status,),
            expect_attempt=job.attempt,
            application_status="",
            site="",
            pilot_id="",
            attempt=attempt,
            reschedule_count=job.reschedule_count + 1,
            output_sandbox="",
            kill_requested=False,
            reset_heartbeat=True,
        ),
        Transition(
            job_id=job.job_id,
            status=S.WAITING,
            minor_status=reason,
            source=source,
            time=now,
            expect=(S.RESCHEDULED,),
            expect_attempt=attempt,
        ),
    ]


def fail_transition(job: JobRecord, now: float, source: str, minor: str) -> Transition:
    return Transition(
        job_id=job.job_id,
        status=S.FAILED,
        minor_status=minor,
        source=source,
        time=now,
        expect=(job.status,),
        expect_attempt=job.attempt,
    )


def kill_transition(job: JobRecord, now: float, source: str, minor: str) -> Transition:
    return Transition(
        job_id=job.job_id,
        status=S.KILLED,
        minor_status=minor,
        source=source,
        time=now,
        expect=(job.status,),
        expect_attempt=job.attempt,
    )


def end_lost_attempt(
    job: JobRecord,
    now: float,
    source: str,
    *,
    reason: str,
    kill_minor: str,
    max_rescheduling: int,
) -> tuple[str, list[Transition]]:
    """An attempt that ended without a result of its own (stalled for good, pilot terminated):
    (outcome, transitions). Killed when a kill was requested, Failed once the job has been
    rescheduled `max_rescheduling` times, else Rescheduled -> Waiting with attempt + 1."""
    if job.kill_requested:
        return "killed", [kill_transition(job, now, source, kill_minor)]
    if job.reschedule_count >= max_rescheduling:
        return "failed", [fail_transition(job, now, source, MAX_RESCHEDULING_MINOR)]
    return "rescheduled", reschedule_transitions(job, now, source, reason)


def is_active(job: JobRecord) -> bool:
    return job.status in ACTIVE_STATES


class TransitionBatcher:
    """Group commit: concurrent callers' transitions share one store transaction.

    While one batch is being committed, new transitions queue up and go in the next batch, so
    under load many matches cost one commit, and a lone caller waits for no timer.
    """

    def __init__(self, store: Store, max_batch: int = 512) -> None:
        self._store = store
        self._max_batch = max_batch
        self._pending: list[tuple[Transition, asyncio.Future[JobRecord | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def apply(self, transition: Transition) -> JobRecord | None:
        future: asyncio.Future[JobRecord | None] = asyncio.get_running_loop().create_future()
        self._pending.append((transition, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all())
        return await future

    async def _flush_all(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            await self._commit(batch)

    async def _commit(
        self, batch: Sequence[tuple[Transition, asyncio.Future[JobRecord | None]]]
    ) -> None:
        try:
            results = await self._store.apply_transitions([t for t, _ in batch])
        except Exception as exc:  # every waiter gets the store's error, none hangs
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
