"""kill -9 central while many pilots are being matched: no acknowledged match is lost and no
job is ever given to two pilots, before or after the restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import grpc
import pytest

from gridpilot.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, pilots_pb2, pilots_pb2_grpc
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle, running_central

JOBS = 3000
PILOTS = 32
# Matches acknowledged before the crash: enough that the kill lands mid-load.
KILL_AFTER = 600


def _resources() -> common_pb2.ResourceDescription:
    return common_pb2.ResourceDescription(
        site=SITE, ce=CE, queue=QUEUE, cpu_time_left=86400, cores=1, memory_mb=4096
    )


def _submit(central: CentralHandle) -> None:
    with central.sync_channel(central.user_token("alice")) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        spec = common_pb2.JobSpec(project="crash", release="r1", priority=3)
        for _ in range(JOBS // 1000):
            stub.SubmitJobs(jobs_pb2.SubmitJobsRequest(jobs=[spec] * 1000), timeout=30)


async def _pilot(
    central: CentralHandle,
    pilot_id: str,
    acked: dict[int, list[str]],
    enough: asyncio.Event,
) -> None:
    token = central.mint("pilot", pilot_id, pilot_id=pilot_id, site=SITE, ce=CE, queue=QUEUE)
    async with central.channel(token) as channel:
        stub = pilots_pb2_grpc.PilotServiceStub(channel)
        request = pilots_pb2.RequestJobRequest(pilot_id=pilot_id, resources=_resources())
        for _ in range(JOBS):
            try:
                reply = await stub.RequestJob(request, timeout=5)
            except grpc.aio.AioRpcError:
                return  # central is gone: whatever was not answered was not acknowledged
            if not reply.HasField("job"):
                return
            acked.setdefault(reply.job.job_id, []).append(pilot_id)
            if sum(len(v) for v in acked.values()) >= KILL_AFTER:
                enough.set()


async def _load_then_crash(central: CentralHandle, prefix: str) -> dict[int, list[str]]:
    acked: dict[int, list[str]] = {}
    enough = asyncio.Event()
    tasks = [
        asyncio.create_task(_pilot(central, f"{prefix}{n}", acked, enough)) for n in range(PILOTS)
    ]
    await asyncio.wait_for(enough.wait(), timeout=60)
    await asyncio.to_thread(central.kill)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    return acked


async def _drain(central: CentralHandle) -> dict[int, list[str]]:
    """After the restart: pilots take every job still waiting."""
    acked: dict[int, list[str]] = {}
    never = asyncio.Event()
    await asyncio.wait_for(
        asyncio.gather(*(_pilot(central, f"after{n}", acked, never) for n in range(8))),
        timeout=90,
    )
    return acked


def _matched_in_store(db: Path) -> dict[int, tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT job_id, status, pilot_id FROM jobs").fetchall()
    finally:
        conn.close()
    return {int(r[0]): (str(r[1]), str(r[2])) for r in rows}


@pytest.mark.timeout(240)
def test_kill_9_under_load_loses_no_match_and_duplicates_none(tmp_path: Path) -> None:
    overrides = {"central": {"log_level": "WARNING", "stalled_after": 600.0}}
    with running_central(tmp_path, overrides) as central:
        _submit(central)
        before = asyncio.run(_load_then_crash(central, "pilot"))
        assert sum(len(p) for p in before.values()) >= KILL_AFTER
        central.start()
        after = _drain_sync(central)
        central.stop()
        jobs = _matched_in_store(central.data_dir / "central.db")

    # No job was acknowledged to two pilots, before the crash or across it.
    assert all(len(p) == 1 for p in before.values())
    assert all(len(p) == 1 for p in after.values())
    assert not set(before) & set(after)
    # Every acknowledged match survived the crash, with its pilot.
    for job_id, (pilot,) in before.items():
        assert jobs[job_id] == ("Matched", pilot), job_id
    for job_id, (pilot,) in after.items():
        assert jobs[job_id] == ("Matched", pilot), job_id
    # Nothing was stranded: every job was matched by the end (committed but unacknowledged
    # matches at the kill are Matched to the pilot whose answer was lost).
    assert len(jobs) == JOBS
    assert all(status == "Matched" for status, _ in jobs.values())
    assert len(before) + len(after) <= JOBS


def _drain_sync(central: CentralHandle) -> dict[int, list[str]]:
    return asyncio.run(_drain(central))
