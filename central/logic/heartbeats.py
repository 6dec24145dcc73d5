"""Heartbeats are buffered in memory and written in one batch about once a second.

A heartbeat costs a dict update on the hot path; the flush is one record_heartbeats call (one
commit) plus one pilot update batch. A heartbeat for a Stalled job brings it back to Running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from central.models.job_states import JobStatus
from central.store.interface import Store
from central.store.records import HeartbeatRecord, JobFilter, PilotUpdate, Transition
from gridpilot.logs import get_logger

log = get_logger(__name__)


class _PilotSeen:
    __slots__ = ("idle", "time")

    def __init__(self, time: float, idle: bool | None) -> None:
        self.time = time
        self.idle = idle


class HeartbeatBuffer:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._beats: dict[int, HeartbeatRecord] = {}
        self._pilots: dict[str, _PilotSeen] = {}
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        return len(self._beats) + len(self._pilots)

    def add(
        self,
        pilot_id: str,
        beats: Iterable[HeartbeatRecord],
        time: float,
        idle: bool | None = None,
    ) -> None:
        """Keep the latest beat per job, and note the pilot alive (and idle or busy)."""
        for beat in beats:
            held = self._beats.get(beat.job_id)
            if held is None or (beat.attempt, beat.time) >= (held.attempt, held.time):
                self._beats[beat.job_id] = beat
        self.note_pilot(pilot_id, time, idle)

    def note_pilot(self, pilot_id: str, time: float, idle: bool | None = None) -> None:
        seen = self._pilots.get(pilot_id)
        if seen is None:
            self._pilots[pilot_id] = _PilotSeen(time, idle)
            return
        seen.time = max(seen.time, time)
        if idle is not None:
            seen.idle = idle

    async def flush(self, now: float) -> int:
        """Write what is buffered; returns the number of job heartbeats written."""
        async with self._lock:
            beats, self._beats = self._beats, {}
            pilots, self._pilots = self._pilots, {}
            if beats:
                await self._store.record_heartbeats(list(beats.values()))
                await self._revive_stalled(beats, now)
            if pilots:
                await self._store.update_pilots(
                    [
                        PilotUpdate(
                            pilot_id=pid, time=seen.time, last_heartbeat=seen.time, idle=seen.idle
                        )
                        for pid, seen in pilots.items()
                    ]
                )
            return len(beats)

    async def _revive_stalled(self, beats: dict[int, HeartbeatRecord], now: float) -> None:
        stalled = await self._store.list_jobs(
            JobFilter(job_ids=tuple(beats), statuses=(JobStatus.STALLED,))
        )
        revive = [
            Transition(
                job_id=job.job_id,
                status=JobStatus.RUNNING,
                minor_status="Job heartbeat received",
                source="HeartbeatBuffer",
                time=now,
                expect=(JobStatus.STALLED,),
                expect_attempt=job.attempt,
            )
            for job in stalled
            if beats[job.job_id].attempt == job.attempt
        ]
        if revive:
            results = await self._store.apply_transitions(revive)
            for t, job in zip(revive, results, strict=True):
                if job is not None:
                    log.info("job.revived", job_id=t.job_id, attempt=job.attempt)
