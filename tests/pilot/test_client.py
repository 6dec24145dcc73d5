from __future__ import annotations

import asyncio
import socket
import time

import grpc
import pytest

from gridpilot.v1 import common_pb2, pilots_pb2
from pilot.client import CentralUnreachableError, PilotClient, is_retryable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_central_gives_up_after_the_window() -> None:
    async def scenario() -> None:
        target = f"127.0.0.1:{_closed_port()}"
        async with PilotClient(
            target, rpc_timeout=1.0, backoff_initial=0.1, backoff_max=0.2
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


def test_reconnect_replaces_the_channel_and_keeps_working() -> None:
    async def scenario() -> None:
        target = f"127.0.0.1:{_closed_port()}"
        async with PilotClient(target, backoff_initial=0.05, backoff_max=0.05) as client:
            with pytest.raises(CentralUnreachableError):
                await client.register(pilots_pb2.RegisterPilotRequest(), give_up_after=0.3)
            client.reconnect()
            with pytest.raises(CentralUnreachableError):
                await client.register(pilots_pb2.RegisterPilotRequest(), give_up_after=0.3)

    asyncio.run(scenario())
