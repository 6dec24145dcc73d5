from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import grpc
import pytest

from gridpilot.channel import ClientSecurity, StaticToken
from gridpilot.security.ca import init_ca
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import common_pb2, pilots_pb2
from pilot.client import CentralUnreachableError, PilotClient, is_retryable
from tests.support.central_process import CE, QUEUE, SITE, running_central


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_central_gives_up_after_the_window(tmp_path: Path) -> None:
    security = ClientSecurity(ClientTls(ca=init_ca(tmp_path / "ca")), StaticToken("t"))

    async def scenario() -> None:
        target = f"127.0.0.1:{_closed_port()}"
        async with PilotClient(
            target, security, rpc_timeout=1.0, backoff_initial=0.1, backoff_max=0.2
        ) as client:
            started = time.monotonic()
            request = pilots_pb2.RequestJobRequest(
                pilot_id="p", resources=common_pb2.ResourceDescription(site="S", cores=1)
            )
            with pytest.raises(CentralUnreachableError) as caught:
                await client.request_job(request, give_up_after=1.0)
            elapsed = time.monotonic() - started
            assert 0.5 < elapsed < 5.0
            assert caught.value.what == "RequestJob"
            assert caught.value.last.code() == grpc.StatusCode.UNAVAILABLE
            assert "central unreachable" in str(caught.value)
            assert is_retryable(caught.value.last)

    asyncio.run(scenario())


def _register_request() -> pilots_pb2.RegisterPilotRequest:
    return pilots_pb2.RegisterPilotRequest(
        pilot_id="p1",
        resources=common_pb2.ResourceDescription(site=SITE, ce=CE, queue=QUEUE, cores=1),
        node=pilots_pb2.NodeInfo(hostname="wn", cores=1),
    )


def test_registration_switches_the_channel_to_the_session_token(tmp_path: Path) -> None:
    """The registration token is spent at registration: every later call (and a second
    registration with the same token) shows which token the channel carries."""
    with running_central(tmp_path) as central:
        security = central.client_security(central.registration_token())

        async def scenario() -> None:
            async with PilotClient(central.target, security, rpc_timeout=5.0) as client:
                answer = await client.register(_register_request(), give_up_after=5.0)
                assert answer.pilot_token
                with pytest.raises(grpc.aio.AioRpcError) as replay:
                    await client.register(_register_request(), give_up_after=5.0)
                assert replay.value.code() is grpc.StatusCode.UNAUTHENTICATED
                assert "registration token already used" in (replay.value.details() or "")
                client.use_token(answer.pilot_token)
                request = pilots_pb2.RequestJobRequest(pilot_id="p1", resources=_resources())
                assert not (await client.request_job(request)).HasField("job")

        asyncio.run(scenario())


def _resources() -> common_pb2.ResourceDescription:
    return common_pb2.ResourceDescription(
        site=SITE, ce=CE, queue=QUEUE, cores=1, cpu_time_left=3600, memory_mb=1000
    )


def test_the_same_channel_finds_central_again_after_a_restart(tmp_path: Path) -> None:
    with running_central(tmp_path) as central:
        security = central.client_security(central.registration_token())

        async def scenario() -> None:
            async with PilotClient(
                central.target, security, rpc_timeout=2.0, backoff_initial=0.1, backoff_max=0.3
            ) as client:
                answer = await client.register(_register_request(), give_up_after=5.0)
                assert answer.pilot_id == "p1"
                client.use_token(answer.pilot_token)
                request = pilots_pb2.RequestJobRequest(pilot_id="p1", resources=_resources())
                await client.request_job(request, give_up_after=5.0)
                await asyncio.to_thread(central.stop)
                with pytest.raises(CentralUnreachableError):
                    await client.request_job(request, give_up_after=1.5)
                await asyncio.to_thread(central.start)
                back = time.monotonic()
                await client.request_job(request, give_up_after=20.0)
                # The channel's reconnect back-off is capped at 10 s (+20 % jitter).
                assert time.monotonic() - back < 13.0

        asyncio.run(scenario())
