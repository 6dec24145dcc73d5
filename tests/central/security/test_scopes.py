"""Valid tokens acting outside their scope: PERMISSION_DENIED, and nothing changes.

Users and their jobs, job sharing, production managers, administrators; pilots bound to their
site, CE and pilot id; site directors bound to their sites; job tokens bound to one attempt.
Every case runs against a central served over TLS with tokens minted from its own keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from central.store.records import JobFilter
from gridpilot.v1 import (
    auth_pb2,
    common_pb2,
    data_pb2,
    jobs_pb2,
    pilots_pb2,
    sandboxes_pb2,
    sitedirectors_pb2,
)
from tests.central.rpc.pilot_helpers import register, request_job, resources
from tests.central.security.helpers import by_ids, refused_async, spec
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import Env, Metadata, inprocess_central, run

PD = grpc.StatusCode.PERMISSION_DENIED
OTHER_SITE = "GP.OTHER.test"
OTHER_CE = "other-ce"

OVERRIDES: dict[str, Any] = {
    "sites": [
        {"name": SITE, "ces": [{"name": CE, "queues": [QUEUE, "long"]}]},
        {"name": OTHER_SITE, "ces": [{"name": OTHER_CE, "queues": [QUEUE]}]},
    ],
    "groups": [
        {"name": "belle_user", "role": "user", "job_sharing": True},
        {"name": "private", "role": "user"},
        {"name": "belle_production", "role": "production"},
        {"name": "belle_admin", "role": "admin"},
    ],
}


async def _submit(env: Env, md: Metadata, *specs: common_pb2.JobSpec) -> list[int]:
    reply = await env.jobs.SubmitJobs(jobs_pb2.SubmitJobsRequest(jobs=specs), metadata=md)
    return list(reply.job_ids)


async def _state(env: Env) -> list[tuple[int, str, bool, int, str]]:
    jobs = await env.central.store.list_jobs(JobFilter())
    return [(j.job_id, j.status.value, j.kill_requested, j.attempt, j.pilot_id) for j in jobs]


async def _upload(env: Env, md: Metadata, data: bytes, **header: Any) -> str:
    async def stream() -> AsyncIterator[sandboxes_pb2.UploadSandboxRequest]:
        yield sandboxes_pb2.UploadSandboxRequest(
            header=sandboxes_pb2.SandboxHeader(size=len(data), **header)
        )
        yield sandboxes_pb2.UploadSandboxRequest(data=data)

    reply = await env.sandboxes.UploadSandbox(stream(), metadata=md)
    return reply.sandbox_id


async def _download(env: Env, md: Metadata, sandbox_id: str) -> bytes:
    call = env.sandboxes.DownloadSandbox(
        sandboxes_pb2.DownloadSandboxRequest(sandbox_id=sandbox_id), metadata=md
    )
    return b"".join([chunk.data async for chunk in call])


INPUT = sandboxes_pb2.SandboxHeader.KIND_INPUT
OUTPUT = sandboxes_pb2.SandboxHeader.KIND_OUTPUT


def test_a_user_cannot_touch_another_users_job(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, OVERRIDES) as env:
            alice, mallory = env.as_user("alice"), env.as_user("mallory", "private")
            sandbox = await _upload(env, alice, b"steering", kind=INPUT)
            (job_id,) = await _submit(env, alice, spec(input_sandbox=sandbox))
            job_md = env.bearer(env.mint("job", "job:1", job_id=job_id, attempt=1))
            output = await _upload(env, job_md, b"logs", kind=OUTPUT, job_id=job_id, attempt=1)
            before = await _state(env)
            sel = by_ids(job_id)
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "get": lambda: env.jobs.GetJob(
                    jobs_pb2.GetJobRequest(job_id=job_id), metadata=mallory
                ),
                "kill": lambda: env.jobs.KillJobs(
                    jobs_pb2.KillJobsRequest(selection=sel), metadata=mallory
                ),
                "delete": lambda: env.jobs.DeleteJobs(
                    jobs_pb2.DeleteJobsRequest(selection=sel), metadata=mallory
                ),
                "reschedule": lambda: env.jobs.RescheduleJobs(
                    jobs_pb2.RescheduleJobsRequest(selection=sel), metadata=mallory
                ),
                "list by owner": lambda: env.jobs.ListJobs(
                    jobs_pb2.ListJobsRequest(selection=jobs_pb2.JobSelection(owner="alice")),
                    metadata=mallory,
                ),
                "summary by owner": lambda: env.jobs.SummarizeProjects(
                    jobs_pb2.SummarizeProjectsRequest(owner="alice"), metadata=mallory
                ),
                "download output": lambda: _download(env, mallory, output),
                "download input": lambda: _download(env, mallory, sandbox),
            }
            for what, call in calls.items():
                details = await refused_async(call, PD)
                assert "user mallory may not" in details, what
            listed = await env.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=mallory)
            assert list(listed.jobs) == []
            assert await _state(env) == before
            # The owner may do all of it.
            assert await _download(env, alice, output) == b"logs"
            assert await _download(env, alice, sandbox) == b"steering"
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=alice)
            assert got.job.owner == "alice"

    run(body())


def test_job_sharing_group_sees_but_does_not_manage(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, OVERRIDES) as env:
            alice, bob = env.as_user("alice"), env.as_user("bob")
            outsider = env.as_user("carol", "private")
            (job_id,) = await _submit(env, alice, spec())
            (private_job,) = await _submit(env, outsider, spec())
            listed = await env.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bob)
            assert [j.job_id for j in listed.jobs] == [job_id]  # not carol's private group
            by_owner = await env.jobs.ListJobs(
                jobs_pb2.ListJobsRequest(selection=jobs_pb2.JobSelection(owner="alice")),
                metadata=bob,
            )
            assert [j.owner for j in by_owner.jobs] == ["alice"]
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=bob)
            assert got.job.group == "belle_user"
            before = await _state(env)
            await refused_async(
                lambda: env.jobs.KillJobs(
                    jobs_pb2.KillJobsRequest(selection=by_ids(job_id)), metadata=bob
                ),
                PD,
            )
            await refused_async(
                lambda: env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=outsider),
                PD,
            )
            await refused_async(
                lambda: env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=private_job), metadata=bob),
                PD,
            )
            assert await _state(env) == before

    run(body())


def test_production_jobs_need_a_production_manager(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, OVERRIDES) as env:
            alice = env.as_user("alice")
            prod1 = env.as_user("prod1", "belle_production")
            prod2 = env.as_user("prod2", "belle_production")
            details = await refused_async(
                lambda: _submit(env, alice, spec(job_type="Production")), PD
            )
            assert "may not submit Production jobs" in details
            assert await _state(env) == []
            (production,) = await _submit(env, prod1, spec(job_type="Production"))
            (users_job,) = await _submit(env, alice, spec())
            # Any production manager manages every production job ...
            listed = await env.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=prod2)
            assert [j.job_id for j in listed.jobs] == [production]
            killed = await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=by_ids(production)), metadata=prod2
            )
            assert killed.results[0].ok
            # ... but not a user's jobs.
            before = await _state(env)
            for call in (
                lambda: env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=users_job), metadata=prod2),
                lambda: env.jobs.KillJobs(
                    jobs_pb2.KillJobsRequest(selection=by_ids(users_job)), metadata=prod2
                ),
                lambda: env.jobs.DeleteJobs(
                    jobs_pb2.DeleteJobsRequest(selection=by_ids(users_job)), metadata=prod2
                ),
            ):
                await refused_async(call, PD)
            assert await _state(env) == before

    run(body())


def test_admin_reads_and_manages_any_job(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, OVERRIDES) as env:
            (job_id,) = await _submit(env, env.as_user("alice"), spec())
            admin = env.as_admin()
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=admin)
            assert got.job.owner == "alice"
            killed = await env.jobs.KillJobs(
                jobs_pb2.KillJobsRequest(selection=jobs_pb2.JobSelection(owner="alice")),
                metadata=admin,
            )
            assert [r.ok for r in killed.results] == [True]

    run(body())


def test_pilots_are_bound_to_their_site_ce_queue_and_id(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, OVERRIDES) as env:
            await _submit(env, env.as_user("alice"), spec(), spec())
            # A registration token bound elsewhere is refused and not spent.
            token = env.registration_token()
            request = pilots_pb2.RegisterPilotRequest(
                pilot_id="p-other", resources=resources(site=OTHER_SITE, ce=OTHER_CE)
            )
            details = await refused_async(
                lambda: env.pilots.RegisterPilot(request, metadata=env.bearer(token)), PD
            )
            assert "bound to site" in details
            assert await env.central.store.get_pilot("p-other") is None
            ok = await env.pilots.RegisterPilot(
                pilots_pb2.RegisterPilotRequest(pilot_id="p1", resources=resources()),
                metadata=env.bearer(token),
            )
            env.pilot_tokens["p1"] = ok.pilot_token
            other = await register(env, "p2")
            waiting = len(env.central.matcher)
            for offer in (
                {"site": OTHER_SITE, "ce": OTHER_CE},
                {"ce": OTHER_CE},
                {"queue": "long"},
            ):
                await refused_async(lambda o=offer: request_job(env, "p1", **o), PD)  # type: ignore[misc]
            await refused_async(
                lambda: env.pilots.RequestJob(
                    pilots_pb2.RequestJobRequest(pilot_id=other, resources=resources()),
                    metadata=env.as_pilot("p1"),
                ),
                PD,
            )
            assert len(env.central.matcher) == waiting
            # A pilot reports only the jobs it was matched.
            matched = await request_job(env, "p1")
            assert matched is not None
            assert matched.job_token
            before = await _state(env)
            for call in (
                lambda: env.pilots.ReportJobStatus(
                    pilots_pb2.ReportJobStatusRequest(
                        job_id=matched.job_id,
                        attempt=1,
                        status=common_pb2.JOB_STATUS_RUNNING,
                    ),
                    metadata=env.as_pilot(other),
                ),
                lambda: env.pilots.FinishJob(
                    pilots_pb2.FinishJobRequest(
                        job_id=matched.job_id,
                        attempt=1,
                        exit_category=common_pb2.EXIT_CATEGORY_WRAPPER_ERROR,
                    ),
                    metadata=env.as_pilot(other),
                ),
                lambda: env.pilots.ReportPilotEnd(
                    pilots_pb2.ReportPilotEndRequest(pilot_id="p1"), metadata=env.as_pilot(other)
                ),
            ):
                details = await refused_async(call, PD)
                assert f"pilot {other}" in details
            assert await _state(env) == before
            session = env.pilots.PilotSession(
                iter([pilots_pb2.PilotSessionUp(hello=pilots_pb2.SessionHello(pilot_id="p1"))]),
                metadata=env.as_pilot(other),
            )
            details = await refused_async(lambda: _drain(session), PD)
            assert "may not act for pilot 'p1'" in details
            # Its own report goes through.
            finished = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=matched.job_id,
                    attempt=1,
                    exit_category=common_pb2.EXIT_CATEGORY_WRAPPER_ERROR,
                ),
                metadata=env.as_pilot("p1"),
            )
            assert finished.status == common_pb2.JOB_STATUS_FAILED

    run(body())


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


def test_site_directors_act_only_for_their_sites(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, OVERRIDES) as env:
            director = env.as_director([SITE])
            await env.directors.RecordPilots(
                sitedirectors_pb2.RecordPilotsRequest(
                    pilots=[sitedirectors_pb2.PilotRecord(pilot_id="x1", site=OTHER_SITE)]
                ),
                metadata=env.as_admin(),
            )
            mint = auth_pb2.MintPilotTokensRequest(site=OTHER_SITE, ce=OTHER_CE, count=1)
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "mint": lambda: env.auth.MintPilotTokens(mint, metadata=director),
                "demand": lambda: env.directors.GetPilotDemand(
                    sitedirectors_pb2.GetPilotDemandRequest(
                        queues=[resources(), resources(site=OTHER_SITE, ce=OTHER_CE)]
                    ),
                    metadata=director,
                ),
                "record": lambda: env.directors.RecordPilots(
                    sitedirectors_pb2.RecordPilotsRequest(
                        pilots=[sitedirectors_pb2.PilotRecord(pilot_id="x2", site=OTHER_SITE)]
                    ),
                    metadata=director,
                ),
                "update": lambda: env.directors.UpdatePilots(
                    sitedirectors_pb2.UpdatePilotsRequest(
                        updates=[
                            sitedirectors_pb2.PilotUpdate(
                                pilot_id="x1", state=common_pb2.PILOT_STATE_FAILED
                            )
                        ]
                    ),
                    metadata=director,
                ),
                "list": lambda: env.directors.ListPilots(
                    sitedirectors_pb2.ListPilotsRequest(site=OTHER_SITE), metadata=director
                ),
            }
            for what, call in calls.items():
                details = await refused_async(call, PD)
                assert f"for site '{OTHER_SITE}'" in details or "of site" in details, what
            store = env.central.store
            assert await store.get_pilot("x2") is None
            x1 = await store.get_pilot("x1")
            assert x1 is not None
            assert x1.state.value == "Submitted"
            # Its own site works; listing without a site shows only its sites' pilots.
            await env.directors.RecordPilots(
                sitedirectors_pb2.RecordPilotsRequest(
                    pilots=[sitedirectors_pb2.PilotRecord(pilot_id="mine", site=SITE, ce=CE)]
                ),
                metadata=director,
            )
            listed = await env.directors.ListPilots(
                sitedirectors_pb2.ListPilotsRequest(), metadata=director
            )
            assert [p.pilot_id for p in listed.pilots] == ["mine"]
            minted = await env.auth.MintPilotTokens(
                auth_pb2.MintPilotTokensRequest(site=SITE, ce=CE, queue=QUEUE, count=2),
                metadata=director,
            )
            assert len(set(minted.tokens)) == 2

    run(body())


def test_a_job_token_touches_only_its_own_attempt(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, OVERRIDES) as env:
            alice = env.as_user("alice")
            sandbox = await _upload(env, alice, b"steering", kind=INPUT)
            other_sandbox = await _upload(env, alice, b"other", kind=INPUT)
            first, second = await _submit(
                env, alice, spec(input_sandbox=sandbox), spec(input_sandbox=other_sandbox)
            )
            pilot = await register(env, "p1")
            matched = await request_job(env, pilot)
            assert matched is not None
            assert matched.job_id == first
            job = env.bearer(matched.job_token)
            me = await env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=job)
            assert (me.role, me.subject) == ("job", f"job:{first}")
            before = await _state(env)
            status = common_pb2.JOB_STATUS_RUNNING

            refusals: list[Callable[[], Awaitable[Any]]] = [
                lambda: env.pilots.ReportJobStatus(
                    pilots_pb2.ReportJobStatusRequest(job_id=second, attempt=1, status=status),
                    metadata=job,
                ),
                lambda: env.pilots.ReportJobStatus(
                    pilots_pb2.ReportJobStatusRequest(job_id=first, attempt=2, status=status),
                    metadata=job,
                ),
                lambda: env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=second), metadata=job),
                lambda: _upload(env, job, b"x", kind=OUTPUT, job_id=second, attempt=1),
                lambda: _upload(env, job, b"x", kind=OUTPUT, job_id=first, attempt=2),
                lambda: _upload(env, job, b"x", kind=INPUT),
                lambda: _download(env, job, other_sandbox),
                lambda: env.data.RegisterReplicas(
                    data_pb2.RegisterReplicasRequest(
                        replicas=[
                            data_pb2.ReplicaRegistration(
                                lfn="/belle/x.root", se="LOCAL-SE", size=1, job_id=second
                            )
                        ]
                    ),
                    metadata=job,
                ),
                lambda: env.data.AddFailoverRequest(
                    data_pb2.AddFailoverRequestRequest(
                        job_id=second, lfn="/belle/x.root", source_se="A", target_se="B"
                    ),
                    metadata=job,
                ),
            ]
            for call in refusals:
                await refused_async(call, PD)
            assert await _state(env) == before
            assert await env.central.store.list_failover_requests() == []
            # Its own job: status, read, sandboxes in and out, final report.
            await env.pilots.ReportJobStatus(
                pilots_pb2.ReportJobStatusRequest(job_id=first, attempt=1, status=status),
                metadata=job,
            )
            got = await env.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=first), metadata=job)
            assert got.job.status == common_pb2.JOB_STATUS_RUNNING
            assert await _download(env, job, sandbox) == b"steering"
            out = await _upload(env, job, b"log", kind=OUTPUT, job_id=first, attempt=1)
            done = await env.pilots.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=first,
                    attempt=1,
                    exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
                    output_sandbox=out,
                ),
                metadata=job,
            )
            assert done.status == common_pb2.JOB_STATUS_DONE

    run(body())
