from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from central.store.records import FileRecord
from gridpilot.v1 import common_pb2, jobs_pb2
from tests.central.rpc.pilot_helpers import register, request_job
from tests.support.central_process import LOCAL_SE, SITE
from tests.support.inprocess import Env, Metadata, inprocess_central, run


def spec(**kw: object) -> common_pb2.JobSpec:
    fields: dict[str, object] = {"project": "proj1", "release": "release-08-00-00"}
    fields.update(kw)
    return common_pb2.JobSpec(**fields)  # type: ignore[arg-type]


async def submit(env: Env, *specs: common_pb2.JobSpec, md: Metadata | None = None) -> list[int]:
    """Submit as `md` (alice by default)."""
    reply = await env.jobs.SubmitJobs(
        jobs_pb2.SubmitJobsRequest(jobs=specs), metadata=md or env.as_user("alice")
    )
    return list(reply.job_ids)


async def all_jobs(env: Env) -> list[jobs_pb2.JobSummary]:
    return list((await env.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs)


def test_submit_list_get(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            ids = await submit(env, spec(owner="mallory", job_name="a"), spec(job_name="b"))
            assert ids == [1, 2]
            jobs = await all_jobs(env)
            assert [j.job_id for j in jobs] == ids
            assert {j.owner for j in jobs} == {"alice"}  # the caller, not the spec's owner
            assert all(j.status == common_pb2.JOB_STATUS_WAITING for j in jobs)
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=1))
            assert got.spec.owner == "alice"
            assert got.spec.job_type == "User"
            assert got.job.job_name == "a"
            assert [h.status for h in got.history] == [common_pb2.JOB_STATUS_WAITING]
            assert not got.HasField("last_heartbeat")
            assert len(env.central.matcher) == 2
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=99))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert "99" in (err.value.details() or "")
            limited = await env.jobs.ListJobs(jobs_pb2.ListJobsRequest(limit=1))
            assert len(limited.jobs) == 1

    run(body())


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (spec(priority=11), "priority 11"),
        (spec(priority=-1), "priority -1"),
        (spec(project="bad name"), "project name"),
        (spec(project="x" * 33), "project name"),
        (spec(sites=["NOWHERE"]), "unknown site 'NOWHERE'"),
        (spec(banned_sites=["NOWHERE"]), "unknown banned site"),
        (spec(input_lfns=["/belle/data/missing.root"]), "unknown input LFN"),
        (spec(job_type="Analysis"), "job type"),
        (spec(release=""), "release is empty"),
        (spec(output_se="NO-SE"), "unknown output SE"),
        (spec(input_sandbox="ab" * 32), "unknown input sandbox"),
    ],
)
def test_bad_submission_is_refused_and_nothing_stored(
    tmp_path: Path, bad: common_pb2.JobSpec, expected: str
) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await submit(env, spec(), bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert expected in (err.value.details() or "")
            assert await all_jobs(env) == []
            assert len(env.central.matcher) == 0

    run(body())


def test_known_input_lfn_and_sites_accepted(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            lfn = "/belle/data/run1/f1.root"
            await env.central.store.add_files(
                [FileRecord(lfn=lfn, size=10, adler32="00000001", ses=(LOCAL_SE,))]
            )
            ids = await submit(env, spec(input_lfns=[lfn], sites=[SITE], priority=10))
            assert ids == [1]

    run(body())


def test_kill_waiting_and_running_jobs(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            ids = await submit(env, spec(), spec(), spec())
            c = env.central
            # Job 1 runs on a pilot (matched through the logic, as a pilot would).
            pilot_id = await register(env)
            matched = await request_job(env, pilot_id)
            assert matched is not None
            assert matched.job_id == 1
            reply = await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(job_ids=ids[:2])),
                metadata=env.as_user("alice"),
            )
            results = {r.job_id: r for r in reply.results}
            assert results[1].ok
            assert results[1].message == "Marked for termination"
            assert results[2].ok
            job1 = await c.store.get_job(1)
            job2 = await c.store.get_job(2)
            assert job1 is not None
            assert job1.kill_requested
            assert job1.status == "Matched"
            assert job2 is not None
            assert job2.status == "Killed"
            assert 2 not in c.matcher  # type: ignore[operator]
            # Killing again reports per job, without error.
            again = await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(job_ids=[2])),
                metadata=env.as_user("alice"),
            )
            assert not again.results[0].ok
            assert "already Killed" in again.results[0].message

    run(body())


def test_actions_need_a_selection_and_respect_owners(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.jobs.KillJobs(jobs_pb2.KillJobsRequest(), metadata=env.as_user("alice"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # Bob may not kill Alice's job: by id it is refused ...
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.jobs.KillJobs(
                    jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(job_ids=[1])),
                    metadata=env.as_user("bob"),
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "may not kill job(s) 1 (owner alice)" in (err.value.details() or "")
            # ... by project it selects only Bob's own jobs (none) ...
            reply = await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(project="proj1")),
                metadata=env.as_user("bob"),
            )
            assert list(reply.results) == []
            # ... and naming Alice as owner is refused outright.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.jobs.KillJobs(
                    jobs_pb2.KillJobsRequest(
                        selection=jobs_pb2.JobSelection(project="proj1", owner="alice")
                    ),
                    metadata=env.as_user("bob"),
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            job = await env.central.store.get_job(1)
            assert job is not None
            assert job.status == "Waiting"
            assert 1 in env.central.matcher  # type: ignore[operator]
            # An admin may.
            reply = await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(job_ids=[1])),
                metadata=env.as_admin(),
            )
            assert reply.results[0].ok

    run(body())


def test_bad_token_is_unauthenticated(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await submit(env, spec(), md=env.bearer("not-a-token"))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "malformed" in (err.value.details() or "")

    run(body())


def test_delete_and_reschedule(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            c = env.central
            await submit(env, spec(), spec())
            sel = jobs_pb2.JobSelection(job_ids=[1])
            # A waiting job cannot be rescheduled; it can be deleted.
            r = await env.jobs.RescheduleJobs(
                jobs_pb2.RescheduleJobsRequest(selection=sel), metadata=env.as_user("alice")
            )
            assert not r.results[0].ok
            d = await env.jobs.DeleteJobs(
                jobs_pb2.DeleteJobsRequest(selection=sel), metadata=env.as_user("alice")
            )
            assert d.results[0].ok
            assert [j.job_id for j in await all_jobs(env)] == [2]
            assert 1 not in c.matcher  # type: ignore[operator]
            # Job 2 is killed, then rescheduled: new attempt, back to Waiting and matchable.
            sel2 = jobs_pb2.JobSelection(job_ids=[2])
            await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=sel2), metadata=env.as_user("alice")
            )
            r = await env.jobs.RescheduleJobs(
                jobs_pb2.RescheduleJobsRequest(selection=sel2), metadata=env.as_user("alice")
            )
            assert r.results[0].ok
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=2))
            assert got.job.status == common_pb2.JOB_STATUS_WAITING
            assert got.job.attempt == 2
            assert got.job.reschedule_count == 1
            statuses = [h.status for h in got.history]
            assert statuses[-2:] == [
                common_pb2.JOB_STATUS_RESCHEDULED,
                common_pb2.JOB_STATUS_WAITING,
            ]
            assert 2 in c.matcher  # type: ignore[operator]
            # MaxRescheduling: after 3 reschedules a user reschedule is refused.
            for _ in range(2):
                await env.jobs.KillJobs(
                    jobs_pb2.KillJobsRequest(selection=sel2), metadata=env.as_user("alice")
                )
                r = await env.jobs.RescheduleJobs(
                    jobs_pb2.RescheduleJobsRequest(selection=sel2), metadata=env.as_user("alice")
                )
                assert r.results[0].ok
            await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=sel2), metadata=env.as_user("alice")
            )
            r = await env.jobs.RescheduleJobs(
                jobs_pb2.RescheduleJobsRequest(selection=sel2), metadata=env.as_user("alice")
            )
            assert not r.results[0].ok
            assert "Maximum of reschedulings reached" in r.results[0].message

    run(body())


def test_summarize_projects(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec(), spec(), spec(project="other"))
            await submit(env, spec(), md=env.as_user("bob"))
            await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(job_ids=[1])),
                metadata=env.as_user("alice"),
            )
            reply = await env.jobs.SummarizeProjects(
                jobs_pb2.SummarizeProjectsRequest(), metadata=env.as_user("alice")
            )
            by_project = {p.project: {c.status: c.count for c in p.counts} for p in reply.projects}
            assert by_project == {
                "proj1": {common_pb2.JOB_STATUS_WAITING: 1, common_pb2.JOB_STATUS_KILLED: 1},
                "other": {common_pb2.JOB_STATUS_WAITING: 1},
            }
            assert all(p.owner == "alice" and p.submitted_unix > 0 for p in reply.projects)

    run(body())
