from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest

from central.models.pilot_states import PilotState
from gridpilot.v1 import common_pb2, jobs_pb2, pilots_pb2
from tests.central.rpc.pilot_helpers import pilot_md, register, request_job
from tests.central.rpc.test_jobs_rpc import spec, submit
from tests.support.central_process import FAILOVER_SE, LOCAL_SE, SITE
from tests.support.inprocess import Env, inprocess_central, run

FAST = {"central": {"heartbeat_period": 0.2, "stalled_after": 30.0}}


async def report(env: Env, job_id: int, attempt: int, status: int, minor: str = "") -> None:
    await env.pilots.ReportJobStatus(
        pilots_pb2.ReportJobStatusRequest(
            job_id=job_id,
            attempt=attempt,
            status=status,  # type: ignore[arg-type]
            minor_status=minor,
        )
    )


def test_register_match_report_finish(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec(job_name="j1", priority=1), spec(job_name="j2", priority=5))
            pilot_id = await register(env, "pilot-1")
            assert pilot_id == "pilot-1"
            pilot = await env.central.store.get_pilot("pilot-1")
            assert pilot is not None
            assert pilot.state == PilotState.RUNNING
            job = await request_job(env, pilot_id)
            assert job is not None
            assert job.job_id == 2  # higher priority first
            assert job.attempt == 1
            assert job.spec.job_name == "j2"
            assert job.output_se == LOCAL_SE
            assert list(job.failover_ses) == [FAILOVER_SE]
            stored = await env.central.store.get_job(2)
            assert stored is not None
            assert stored.status == "Matched"
            assert stored.pilot_id == "pilot-1"
            assert stored.site == SITE

            await report(env, 2, 1, common_pb2.JOB_STATUS_RUNNING, "Application")
            await report(env, 2, 1, common_pb2.JOB_STATUS_COMPLETING, "Uploading outputs")
            lfn = "/belle/user/alice/proj1/sub00/out_2_1.root"
            finish = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=2,
                    attempt=1,
                    exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
                    outputs=[
                        pilots_pb2.OutputFile(lfn=lfn, se=LOCAL_SE, size=5, adler32="05c801f0")
                    ],
                )
            )
            assert finish.status == common_pb2.JOB_STATUS_DONE
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=2))
            assert [o.lfn for o in got.outputs] == [lfn]
            assert got.job.minor_status == "Execution Complete"
            statuses = [h.status for h in got.history]
            assert statuses == [
                common_pb2.JOB_STATUS_WAITING,
                common_pb2.JOB_STATUS_MATCHED,
                common_pb2.JOB_STATUS_RUNNING,
                common_pb2.JOB_STATUS_COMPLETING,
                common_pb2.JOB_STATUS_DONE,
            ]
            files = await env.central.store.get_files([lfn])
            assert files[lfn].ses == (LOCAL_SE,)
            # A second final report is refused.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.pilots.FinishJob(
                    pilots_pb2.FinishJobRequest(
                        job_id=2, attempt=1, exit_category=common_pb2.EXIT_CATEGORY_SUCCESS
                    )
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

            await env.pilots.ReportPilotEnd(
                pilots_pb2.ReportPilotEndRequest(
                    pilot_id="pilot-1", reason="no more jobs", jobs_run=1
                )
            )
            pilot = await env.central.store.get_pilot("pilot-1")
            assert pilot is not None
            assert pilot.state == PilotState.DONE
            assert pilot.jobs_run == 1

    run(body())


def test_skipped_steps_are_recorded(tmp_path: Path) -> None:
    """A wrapper that reports Completing straight from Matched, or finishes without any report,
    leaves a legal history: the steps it skipped are filled in, its outputs kept."""

    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec(job_name="j1"), spec(job_name="j2"))
            pilot_id = await register(env)
            first = await request_job(env, pilot_id)
            second = await request_job(env, pilot_id)
            assert first is not None
            assert second is not None
            await report(env, first.job_id, 1, common_pb2.JOB_STATUS_COMPLETING, "Uploading")
            lfn = "/belle/user/alice/proj1/sub00/skipped.root"
            finish = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=second.job_id,
                    attempt=1,
                    exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
                    outputs=[
                        pilots_pb2.OutputFile(lfn=lfn, se=LOCAL_SE, size=5, adler32="05c801f0")
                    ],
                )
            )
            assert finish.status == common_pb2.JOB_STATUS_DONE
            S = common_pb2
            expected = {
                first.job_id: [S.JOB_STATUS_RUNNING, S.JOB_STATUS_COMPLETING],
                second.job_id: [S.JOB_STATUS_RUNNING, S.JOB_STATUS_DONE],
            }
            for job_id, after_matched in expected.items():
                got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
                statuses = [h.status for h in got.history]
                assert statuses == [S.JOB_STATUS_WAITING, S.JOB_STATUS_MATCHED, *after_matched]
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=second.job_id))
            assert [o.lfn for o in got.outputs] == [lfn]
            # An ended job takes no more reports, and says why.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await report(env, second.job_id, 1, common_pb2.JOB_STATUS_RUNNING)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert f"job {second.job_id} is Done; report refused" in (err.value.details() or "")

    run(body())


@pytest.mark.parametrize(
    ("category", "status", "minor"),
    [
        (common_pb2.EXIT_CATEGORY_APPLICATION_ERROR, "Failed", "Application Finished With Errors"),
        (common_pb2.EXIT_CATEGORY_INPUT_DATA_UNAVAILABLE, "Failed", "Input Data Not Available"),
        (common_pb2.EXIT_CATEGORY_UPLOAD_FAILED, "Failed", "Uploading Job Outputs Failed"),
        (common_pb2.EXIT_CATEGORY_WATCHDOG_KILL, "Failed", "Killed by Watchdog"),
        (common_pb2.EXIT_CATEGORY_WRAPPER_ERROR, "Failed", "Job Wrapper Error"),
        (common_pb2.EXIT_CATEGORY_KILLED, "Killed", "Killed by user"),
    ],
)
def test_final_report_mapping(tmp_path: Path, category: int, status: str, minor: str) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec())
            pilot_id = await register(env)
            assert await request_job(env, pilot_id) is not None
            reply = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=1,
                    attempt=1,
                    exit_category=category,  # type: ignore[arg-type]
                    exit_code=3,
                )
            )
            job = await env.central.store.get_job(1)
            assert job is not None
            assert job.status == status
            assert job.minor_status == minor
            assert job.application_status == "exit code 3"
            assert reply.status == getattr(common_pb2, f"JOB_STATUS_{status.upper()}")

    run(body())


def test_pilot_terminated_reschedules_until_the_maximum(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, {"central": {"max_rescheduling": 2}}) as env:
            await submit(env, spec())
            pilot_id = await register(env, "pilot-t")

            async def terminated(attempt: int) -> int:
                reply = await env.pilots.FinishJob(
                    pilots_pb2.FinishJobRequest(
                        job_id=1,
                        attempt=attempt,
                        exit_category=common_pb2.EXIT_CATEGORY_PILOT_TERMINATED,
                        message="pilot received SIGTERM",
                    )
                )
                return reply.status

            for attempt in (1, 2):
                job = await request_job(env, pilot_id)
                assert job is not None
                assert (job.job_id, job.attempt) == (1, attempt)
                await report(env, 1, attempt, common_pb2.JOB_STATUS_RUNNING, "Application")
                assert await terminated(attempt) == common_pb2.JOB_STATUS_WAITING
                stored = await env.central.store.get_job(1)
                assert stored is not None
                assert (stored.status, stored.attempt, stored.reschedule_count) == (
                    "Waiting",
                    attempt + 1,
                    attempt,
                )
                assert stored.minor_status == "Pilot terminated: job rescheduled"
                assert stored.pilot_id == ""
                # The old attempt's late reports are refused.
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await terminated(attempt)
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=1))
            statuses = [common_pb2.JobStatus.Name(h.status) for h in got.history]
            assert statuses.count("JOB_STATUS_RESCHEDULED") == 2
            assert statuses[-2:] == ["JOB_STATUS_RESCHEDULED", "JOB_STATUS_WAITING"]
            assert [h.source for h in got.history][-1] == "pilot:pilot-t"
            # The third attempt is terminated too: two reschedules were the maximum.
            job = await request_job(env, pilot_id)
            assert job is not None
            assert job.attempt == 3
            assert await terminated(3) == common_pb2.JOB_STATUS_FAILED
            stored = await env.central.store.get_job(1)
            assert stored is not None
            assert (stored.status, stored.attempt) == ("Failed", 3)
            assert stored.minor_status == "Maximum of reschedulings reached"
            assert await request_job(env, pilot_id) is None

    run(body())


def test_pilot_terminated_after_a_kill_request_is_killed(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec())
            pilot_id = await register(env)
            assert await request_job(env, pilot_id) is not None
            await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(job_ids=[1])),
                metadata=env.as_user("alice"),
            )
            reply = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=1, attempt=1, exit_category=common_pb2.EXIT_CATEGORY_PILOT_TERMINATED
                )
            )
            assert reply.status == common_pb2.JOB_STATUS_KILLED
            assert await request_job(env, pilot_id) is None

    run(body())


def test_success_with_failover_output_is_completed_pending_requests(tmp_path: Path) -> None:
    # Long failover period: the agent must not act during this test.
    overrides = {"central": {"failover_period": 3600.0}}

    async def body() -> None:
        async with inprocess_central(tmp_path, overrides) as env:
            await submit(env, spec())
            pilot_id = await register(env)
            assert await request_job(env, pilot_id) is not None
            lfn = "/belle/user/alice/proj1/sub00/out_1_1.root"
            reply = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=1,
                    attempt=1,
                    exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
                    outputs=[
                        pilots_pb2.OutputFile(
                            lfn=lfn,
                            se=FAILOVER_SE,
                            size=5,
                            adler32="05c801f0",
                            destination_se=LOCAL_SE,
                        )
                    ],
                )
            )
            assert reply.status == common_pb2.JOB_STATUS_COMPLETED
            job = await env.central.store.get_job(1)
            assert job is not None
            assert job.minor_status == "Pending Requests"
            requests = await env.central.store.list_failover_requests(job_id=1)
            assert [(r.lfn, r.source_se, r.target_se, r.status) for r in requests] == [
                (lfn, FAILOVER_SE, LOCAL_SE, "Waiting")
            ]

    run(body())


def test_no_job_given_twice_under_concurrent_requests(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            n_jobs, n_pilots = 60, 12
            await submit(env, *[spec(job_name=f"j{i}") for i in range(n_jobs)])
            pilots = [await register(env, f"p{i}") for i in range(n_pilots)]

            async def drain(pilot_id: str) -> list[int]:
                got: list[int] = []
                while (job := await request_job(env, pilot_id)) is not None:
                    got.append(job.job_id)
                return got

            results = await asyncio.gather(*(drain(p) for p in pilots))
            given = [job_id for r in results for job_id in r]
            assert sorted(given) == list(range(1, n_jobs + 1))
            # Every job is Matched to the pilot that received it.
            for pilot_id, got in zip(pilots, results, strict=True):
                for job_id in got:
                    job = await env.central.store.get_job(job_id)
                    assert job is not None
                    assert job.pilot_id == pilot_id
            idle = await env.central.store.get_pilot(pilots[0])
            assert idle is not None

    run(body())


def test_stale_attempt_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec())
            pilot_id = await register(env)
            assert await request_job(env, pilot_id) is not None
            await report(env, 1, 1, common_pb2.JOB_STATUS_RUNNING)
            r = await env.jobs.RescheduleJobs(
                jobs_pb2.RescheduleJobsRequest(selection=jobs_pb2.JobSelection(job_ids=[1])),
                metadata=env.as_user("alice"),
            )
            assert r.results[0].ok
            for call in (
                report(env, 1, 1, common_pb2.JOB_STATUS_COMPLETING),
                env.pilots.FinishJob(
                    pilots_pb2.FinishJobRequest(
                        job_id=1, attempt=1, exit_category=common_pb2.EXIT_CATEGORY_SUCCESS
                    )
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "attempt 1 is not the current attempt 2" in (err.value.details() or "")
            job = await env.central.store.get_job(1)
            assert job is not None
            assert job.status == "Waiting"
            assert job.attempt == 2
            # The new attempt is matched again and its reports are accepted.
            again = await request_job(env, pilot_id)
            assert again is not None
            assert again.attempt == 2
            await report(env, 1, 2, common_pb2.JOB_STATUS_RUNNING)

    run(body())


def test_bad_reports(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec())
            pilot_id = await register(env)
            assert await request_job(env, pilot_id) is not None
            cases: list[tuple[Awaitable[object], grpc.StatusCode]] = [
                (report(env, 1, 1, common_pb2.JOB_STATUS_DONE), grpc.StatusCode.INVALID_ARGUMENT),
                (report(env, 7, 1, common_pb2.JOB_STATUS_RUNNING), grpc.StatusCode.NOT_FOUND),
                (
                    env.pilots.FinishJob(pilots_pb2.FinishJobRequest(job_id=1, attempt=1)),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (
                    env.pilots.FinishJob(
                        pilots_pb2.FinishJobRequest(
                            job_id=1,
                            attempt=1,
                            exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
                            outputs=[pilots_pb2.OutputFile(lfn="/x/y.root", se="NO-SE")],
                        )
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (
                    env.pilots.RegisterPilot(
                        pilots_pb2.RegisterPilotRequest(
                            resources=common_pb2.ResourceDescription(site="NOWHERE")
                        )
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
            ]
            for call, code in cases:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == code, err.value.details()
            job = await env.central.store.get_job(1)
            assert job is not None
            assert job.status == "Matched"

    run(body())


async def _session(
    env: Env, pilot_id: str, running: list[int], up: asyncio.Queue[pilots_pb2.PilotSessionUp | None]
) -> grpc.aio.StreamStreamCall[pilots_pb2.PilotSessionUp, pilots_pb2.PilotSessionDown]:
    async def requests() -> AsyncIterator[pilots_pb2.PilotSessionUp]:
        yield pilots_pb2.PilotSessionUp(
            hello=pilots_pb2.SessionHello(pilot_id=pilot_id, running_job_ids=running)
        )
        while (item := await up.get()) is not None:
            yield item

    return env.pilots.PilotSession(requests(), metadata=pilot_md(env, pilot_id))


def test_session_heartbeats_and_kill_command(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, FAST) as env:
            c = env.central
            await submit(env, spec())
            pilot_id = await register(env, "pilot-s")
            assert await request_job(env, pilot_id) is not None
            await report(env, 1, 1, common_pb2.JOB_STATUS_RUNNING)
            up: asyncio.Queue[pilots_pb2.PilotSessionUp | None] = asyncio.Queue()
            call = await _session(env, pilot_id, [1], up)
            beat = pilots_pb2.JobHeartbeat(
                job_id=1, attempt=1, cpu_seconds=3.5, rss_bytes=1000, stdout_tail=["line 1"]
            )
            await up.put(pilots_pb2.PilotSessionUp(heartbeat=pilots_pb2.Heartbeat(jobs=[beat])))
            for _ in range(100):
                if pilot_id in c.sessions and (await c.heartbeats.flush(c.clock())) == 1:
                    break
                await asyncio.sleep(0.02)
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=1))
            assert got.last_heartbeat.cpu_seconds == 3.5
            assert list(got.last_heartbeat.stdout_tail) == ["line 1"]

            await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(job_ids=[1])),
                metadata=env.as_user("alice"),
            )
            down = await asyncio.wait_for(call.read(), 5)
            assert isinstance(down, pilots_pb2.PilotSessionDown)
            assert down.command.kind == pilots_pb2.Command.KIND_KILL_JOB
            assert down.command.job_id == 1
            await up.put(None)
            await asyncio.wait_for(call.code(), 5)

            # After a reconnect, the hello listing job 1 brings the kill again.
            up2: asyncio.Queue[pilots_pb2.PilotSessionUp | None] = asyncio.Queue()
            call2 = await _session(env, pilot_id, [1], up2)
            down = await asyncio.wait_for(call2.read(), 5)
            assert isinstance(down, pilots_pb2.PilotSessionDown)
            assert down.command.kind == pilots_pb2.Command.KIND_KILL_JOB
            assert down.command.job_id == 1
            # The pilot kills it and reports Killed.
            reply = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=1, attempt=1, exit_category=common_pb2.EXIT_CATEGORY_KILLED
                ),
                metadata=env.as_pilot(pilot_id),
            )
            assert reply.status == common_pb2.JOB_STATUS_KILLED
            await up2.put(None)
            await asyncio.wait_for(call2.code(), 5)

    run(body())


def test_session_must_start_with_hello(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:

            async def requests() -> AsyncIterator[pilots_pb2.PilotSessionUp]:
                yield pilots_pb2.PilotSessionUp(heartbeat=pilots_pb2.Heartbeat())

            call = env.pilots.PilotSession(requests())
            assert await asyncio.wait_for(call.code(), 5) == grpc.StatusCode.INVALID_ARGUMENT

    run(body())


def test_hello_kills_jobs_not_assigned_to_the_pilot(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec())
            pilot_id = await register(env, "pilot-x")
            up: asyncio.Queue[pilots_pb2.PilotSessionUp | None] = asyncio.Queue()
            # Job 1 is Waiting (not this pilot's), job 99 does not exist.
            call = await _session(env, pilot_id, [1, 99], up)
            kinds = [await asyncio.wait_for(call.read(), 5) for _ in range(2)]
            ids = sorted(
                d.command.job_id for d in kinds if isinstance(d, pilots_pb2.PilotSessionDown)
            )
            assert ids == [1, 99]
            await up.put(None)
            await asyncio.wait_for(call.code(), 5)

    run(body())
