"""AdminService on a central served over TLS: revocations (each kind, cached tokens too), site
and user bans, draining pilots."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from gridpilot.v1 import admin_pb2, auth_pb2, jobs_pb2, pilots_pb2, sitedirectors_pb2
from tests.central.rpc.pilot_helpers import register, request_job, resources
from tests.central.security.helpers import refused_async, spec
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import Env, Metadata, inprocess_central, run

U = grpc.StatusCode.UNAUTHENTICATED
PD = grpc.StatusCode.PERMISSION_DENIED


async def _whoami(env: Env, md: Metadata) -> auth_pb2.WhoAmIResponse:
    return await env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=md)


async def _revoke(env: Env, **target: str) -> None:
    await env.admin.Revoke(admin_pb2.RevokeRequest(**target), metadata=env.as_admin())


def test_revoked_cached_token_is_refused_at_once(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            alice = env.as_user("alice")
            me = await _whoami(env, alice)
            assert env.central.security.verifier.cached >= 1  # verified once, now cached
            await _revoke(env, jti=me.jti, reason="phished")
            details = await refused_async(lambda: _whoami(env, alice), U)
            assert f"token {me.jti} was revoked: phished" in details
            assert (await _whoami(env, env.as_user("alice"))).subject == "alice"

    run(body())


def test_revoke_a_user_a_director_and_a_pilot(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            alice_tokens = [env.as_user("alice"), env.as_user("alice", "belle_production")]
            bob = env.as_user("bob")
            director = env.as_director(name="dir-a")
            minted = await env.auth.MintPilotTokens(
                auth_pb2.MintPilotTokensRequest(site=SITE, ce=CE, count=1), metadata=director
            )
            other_director = env.as_director(name="dir-b")
            await env.jobs.SubmitJobs(
                jobs_pb2.SubmitJobsRequest(jobs=[spec()]), metadata=env.as_user("carol")
            )
            pilot = await register(env, "p-revoked")
            matched = await request_job(env, pilot)
            assert matched is not None
            job_md = env.bearer(matched.job_token)
            for md in (*alice_tokens, director, env.as_pilot(pilot), job_md):
                await _whoami(env, md)  # valid and cached before the revocations

            await _revoke(env, user="alice", reason="left the experiment")
            await _revoke(env, site_director="dir-a", reason="host compromised")
            await _revoke(env, pilot_id=pilot, reason="misbehaving node")

            for md in alice_tokens:
                assert "tokens of user alice were revoked" in await refused_async(
                    functools.partial(_whoami, env, md), U
                )
            registration = env.bearer(minted.tokens[0])
            for md in (director, registration):
                assert "tokens of site director dir-a were revoked" in await refused_async(
                    functools.partial(_whoami, env, md), U
                )
            for md in (env.as_pilot(pilot), job_md):
                assert f"tokens of pilot {pilot} were revoked" in await refused_async(
                    functools.partial(_whoami, env, md), U
                )
            # Others are untouched; a user revoked is not banned: a new login works later.
            await _whoami(env, bob)
            await _whoami(env, other_director)
            await asyncio.sleep(1.1)  # token times are whole seconds
            assert (await _whoami(env, env.as_user("alice"))).subject == "alice"

            listed = await env.admin.ListRevocations(
                admin_pb2.ListRevocationsRequest(), metadata=env.as_admin()
            )
            assert {(r.kind, r.value, r.reason) for r in listed.revocations} == {
                ("user", "alice", "left the experiment"),
                ("site_director", "dir-a", "host compromised"),
                ("pilot", pilot, "misbehaving node"),
            }
            await refused_async(
                lambda: env.admin.Revoke(admin_pb2.RevokeRequest(), metadata=env.as_admin()),
                grpc.StatusCode.INVALID_ARGUMENT,
            )

    run(body())


def test_banned_site_gets_no_job_and_reports_blocked(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            admin = env.as_admin()
            await env.jobs.SubmitJobs(
                jobs_pb2.SubmitJobsRequest(jobs=[spec()]), metadata=env.as_user("alice")
            )
            pilot = await register(env, "p1")
            director = env.as_director()

            async def demand() -> sitedirectors_pb2.QueueDemand:
                reply = await env.directors.GetPilotDemand(
                    sitedirectors_pb2.GetPilotDemandRequest(queues=[resources()]),
                    metadata=director,
                )
                return reply.demands[0]

            await env.admin.SetSiteBanned(
                admin_pb2.SetSiteBannedRequest(site=SITE, banned=True, reason="downtime"),
                metadata=admin,
            )
            assert await request_job(env, pilot) is None
            blocked = await demand()
            assert (blocked.blocked, blocked.eligible_jobs) == (True, 0)
            await env.admin.SetSiteBanned(
                admin_pb2.SetSiteBannedRequest(site=SITE, banned=False), metadata=admin
            )
            assert not (await demand()).blocked
            assert await request_job(env, pilot) is not None
            await refused_async(
                lambda: env.admin.SetSiteBanned(
                    admin_pb2.SetSiteBannedRequest(site="NOWHERE", banned=True), metadata=admin
                ),
                grpc.StatusCode.NOT_FOUND,
            )

    run(body())


def test_banned_user_is_refused_and_their_jobs_wait(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            admin = env.as_admin()
            for user in ("alice", "bob"):
                await env.jobs.SubmitJobs(
                    jobs_pb2.SubmitJobsRequest(jobs=[spec(priority=10 if user == "alice" else 0)]),
                    metadata=env.as_user(user),
                )
            alice = env.as_user("alice")
            await env.admin.SetUserBanned(
                admin_pb2.SetUserBannedRequest(user="alice", banned=True, reason="abuse"),
                metadata=admin,
            )
            details = await refused_async(
                lambda: env.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=alice), PD
            )
            assert details == "user alice is banned"
            pilot = await register(env, "p1")
            matched = await request_job(env, pilot)
            assert matched is not None
            assert matched.spec.owner == "bob"  # alice's higher-priority job is held back
            assert await request_job(env, pilot) is None
            bans = await env.central.store.list_bans("user")
            assert [(b.name, b.banned, b.reason) for b in bans] == [("alice", True, "abuse")]
            await env.admin.SetUserBanned(
                admin_pb2.SetUserBannedRequest(user="alice", banned=False), metadata=admin
            )
            again = await request_job(env, pilot)
            assert again is not None
            assert again.spec.owner == "alice"
            await env.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=alice)

    run(body())


def test_drain_pilots_by_site_and_id(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            pilot = await register(env, "p-drain")
            stop = asyncio.Event()

            async def up() -> AsyncIterator[pilots_pb2.PilotSessionUp]:
                yield pilots_pb2.PilotSessionUp(hello=pilots_pb2.SessionHello(pilot_id=pilot))
                await stop.wait()

            call = env.pilots.PilotSession(up(), metadata=env.as_pilot(pilot))
            for _ in range(200):
                if pilot in env.central.sessions:
                    break
                await asyncio.sleep(0.01)
            reply = await env.admin.DrainPilots(
                admin_pb2.DrainPilotsRequest(site=SITE, pilot_ids=["not-connected"]),
                metadata=env.as_admin(),
            )
            assert list(reply.drained) == [pilot]
            down = await asyncio.wait_for(call.read(), 5)
            assert isinstance(down, pilots_pb2.PilotSessionDown)
            assert down.command.kind == pilots_pb2.Command.KIND_DRAIN
            stop.set()
            await asyncio.wait_for(call.code(), 5)
            await refused_async(
                lambda: env.admin.DrainPilots(
                    admin_pb2.DrainPilotsRequest(), metadata=env.as_admin()
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            )

    run(body())


def test_queue_binding_of_a_registration_token_is_optional(tmp_path: Path) -> None:
    """A token minted without a queue serves every queue of its CE."""

    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            token = env.mint("pilot_registration", "director", site=SITE, ce=CE)
            reply = await env.pilots.RegisterPilot(
                pilots_pb2.RegisterPilotRequest(pilot_id="pq", resources=resources(queue=QUEUE)),
                metadata=env.bearer(token),
            )
            assert reply.pilot_token
            assert reply.pilot_token_expires_unix > time.time()

    run(body())
