from __future__ import annotations

from pathlib import Path

from central.logic.heartbeats import HeartbeatBuffer
from central.logic.jobs import kill_jobs
from central.logic.reports import report_status
from central.logic.stalled import check_stalled_jobs
from central.models.job_states import JobStatus
from central.store.records import HeartbeatRecord, JobFilter
from tests.central.logic.helpers import ALICE, World, world
from tests.support.inprocess import run

S = JobStatus
# stalled_after 60 s, then 120 s more as Stalled before a reschedule; max 2 reschedules.
TIMES = {
    "central": {
        "heartbeat_period": 10.0,
        "stalled_after": 60.0,
        "reschedule_stalled_after": 120.0,
        "max_rescheduling": 2,
    }
}


async def check(w: World) -> tuple[int, int, int, int]:
    r = await check_stalled_jobs(
        w.store, w.matcher, w.heartbeats, w.sessions, w.config, now=w.clock()
    )
    return r.stalled, r.rescheduled, r.failed, r.killed


async def status(w: World, job_id: int = 1) -> tuple[JobStatus, int]:
    job = await w.store.get_job(job_id)
    assert job is not None
    return job.status, job.attempt


async def start_running(w: World) -> int:
    assignment = await w.match()
    assert assignment is not None
    job = assignment.job
    await report_status(
        w.store,
        job_id=job.job_id,
        attempt=job.attempt,
        status=S.RUNNING,
        minor_status="Application",
        application_status="",
        now=w.clock(),
    )
    return job.attempt


def beat(job_id: int, attempt: int, time: float) -> HeartbeatRecord:
    return HeartbeatRecord(
        job_id=job_id,
        attempt=attempt,
        time=time,
        cpu_seconds=1.0,
        wall_seconds=1.0,
        rss_bytes=1,
        disk_free_bytes=1,
        load_average=0.1,
    )


def test_stalled_rescheduled_then_failed_after_max(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, TIMES) as w:
            await w.submit()
            await w.pilot()
            for attempt in (1, 2, 3):
                assert await start_running(w) == attempt
                w.clock.advance(59)
                assert await check(w) == (0, 0, 0, 0)
                w.clock.advance(2)
                assert await check(w) == (1, 0, 0, 0)
                assert await status(w) == (S.STALLED, attempt)
                w.clock.advance(119)
                assert await check(w) == (0, 0, 0, 0)
                w.clock.advance(2)
                if attempt < 3:
                    assert await check(w) == (0, 1, 0, 0)
                    assert await status(w) == (S.WAITING, attempt + 1)
                    assert 1 in w.matcher
            assert await check(w) == (0, 0, 1, 0)
            job = await w.store.get_job(1)
            assert job is not None
            assert job.status == S.FAILED
            assert job.minor_status == "Maximum of reschedulings reached"
            assert job.reschedule_count == 2
            assert 1 not in w.matcher

    run(body())


def test_heartbeats_keep_a_job_alive_and_revive_a_stalled_one(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, TIMES) as w:
            await w.submit()
            await w.pilot()
            attempt = await start_running(w)
            for _ in range(5):
                w.clock.advance(50)
                w.heartbeats.add("pilot-1", [beat(1, attempt, w.clock())], w.clock())
                assert await check(w) == (0, 0, 0, 0)  # the buffered beat is flushed first
            w.clock.advance(61)
            assert await check(w) == (1, 0, 0, 0)
            # A beat of an old attempt does not count ...
            w.heartbeats.add("pilot-1", [beat(1, attempt + 1, w.clock())], w.clock())
            await w.heartbeats.flush(w.clock())
            assert await status(w) == (S.STALLED, 1)
            # ... one of the current attempt brings it back to Running.
            w.heartbeats.add("pilot-1", [beat(1, attempt, w.clock())], w.clock())
            assert await w.heartbeats.flush(w.clock()) == 1
            assert await status(w) == (S.RUNNING, 1)
            pilot = await w.store.get_pilot("pilot-1")
            assert pilot is not None
            assert pilot.last_heartbeat == w.clock()

    run(body())


def test_quiet_kill_requested_job_ends_killed(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, TIMES) as w:
            await w.submit()
            await w.pilot()
            await start_running(w)
            queue = w.sessions.open("pilot-1")
            results = await kill_jobs(
                w.store,
                w.matcher,
                w.sessions,
                caller=ALICE,
                where=JobFilter(job_ids=(1,)),
                now=w.clock(),
            )
            assert results[0].ok
            command = queue.get_nowait()
            assert command is not None
            assert command.job_id == 1
            w.clock.advance(61)
            assert await check(w) == (0, 0, 0, 1)
            job = await w.store.get_job(1)
            assert job is not None
            assert job.status == S.KILLED
            assert 1 not in w.matcher

    run(body())


def test_heartbeat_buffer_keeps_latest_per_job(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path, TIMES) as w:
            await w.submit(2)
            await w.pilot()
            await start_running(w)
            buf = HeartbeatBuffer(w.store)
            buf.add("pilot-1", [beat(1, 1, 10.0), beat(1, 1, 30.0)], 30.0)
            buf.add("pilot-1", [beat(1, 1, 20.0)], 30.0, idle=True)
            assert buf.pending == 2  # one job, one pilot
            assert await buf.flush(w.clock()) == 1
            last = await w.store.last_heartbeat(1)
            assert last is not None
            assert last.time == 30.0
            assert buf.pending == 0
            assert await buf.flush(w.clock()) == 0
            pilot = await w.store.get_pilot("pilot-1")
            assert pilot is not None
            assert pilot.idle_since == 30.0

    run(body())
