"""The agents as central runs them: real periods (short), real store, real SE directories."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from gridpilot.checksum import adler32_of_bytes
from gridpilot.v1 import common_pb2, jobs_pb2, pilots_pb2
from tests.central.rpc.pilot_helpers import register, request_job
from tests.central.rpc.test_jobs_rpc import spec, submit
from tests.support.central_process import FAILOVER_SE, LOCAL_SE
from tests.support.inprocess import Env, inprocess_central, run
from wrapper.se import open_storage

FAST = {
    "central": {
        "heartbeat_period": 0.1,
        "stalled_after": 0.3,
        "reschedule_stalled_after": 0.3,
        "stalled_check_period": 0.05,
        "failover_period": 0.05,
        "max_rescheduling": 1,
    }
}


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def status_of(env: Env, job_id: int) -> tuple[int, int]:
    got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
    return got.job.status, got.job.attempt


def test_silent_job_is_rescheduled_then_failed(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, FAST) as env:
            await submit(env, spec())
            pilot_id = await register(env)
            assert await request_job(env, pilot_id) is not None

            async def rescheduled() -> bool:
                return await status_of(env, 1) == (common_pb2.JOB_STATUS_WAITING, 2)

            await eventually(rescheduled)
            again = await request_job(env, pilot_id)
            assert again is not None
            assert again.attempt == 2

            async def failed() -> bool:
                return (await status_of(env, 1))[0] == common_pb2.JOB_STATUS_FAILED

            await eventually(failed)
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=1))
            assert got.job.minor_status == "Maximum of reschedulings reached"
            history = [h.status for h in got.history]
            assert common_pb2.JOB_STATUS_STALLED in history
            assert common_pb2.JOB_STATUS_RESCHEDULED in history

    run(body())


def test_failover_agent_finishes_the_job(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, FAST) as env:
            lfn = "/belle/user/alice/proj1/sub00/out_1_1.root"
            data = b"event data" * 100
            local = tmp_path / "out.root"
            local.write_bytes(data)
            failover = env.central.ses.get(FAILOVER_SE)
            target = env.central.ses.get(LOCAL_SE)
            assert failover is not None
            assert target is not None
            open_storage(failover.url).upload(local, lfn)
            await submit(env, spec())
            pilot_id = await register(env)
            assert await request_job(env, pilot_id) is not None
            reply = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=1,
                    attempt=1,
                    exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
                    outputs=[
                        pilots_pb2.OutputFile(
                            lfn=lfn,
                            se=FAILOVER_SE,
                            size=len(data),
                            adler32=adler32_of_bytes(data),
                            destination_se=LOCAL_SE,
                        )
                    ],
                )
            )
            assert reply.status == common_pb2.JOB_STATUS_COMPLETED

            async def done() -> bool:
                return (await status_of(env, 1))[0] == common_pb2.JOB_STATUS_DONE

            await eventually(done)
            assert open_storage(target.url).checksum(lfn) == adler32_of_bytes(data)
            copy = Path(failover.url.removeprefix("file://") + lfn)
            assert not await asyncio.to_thread(copy.exists)

    run(body())
