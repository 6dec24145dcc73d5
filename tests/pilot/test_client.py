from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import grpc
import pytest

from gridpilot.v1 import common_pb2, pilots_pb2
from pilot.client import CentralUnreachableError, PilotClient, is_retryable
from tests.support.central_process import CE, QUEUE, SITE, running_central


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


def test_the_same_channel_finds_central_again_after_a_restart(tmp_path: Path) -> None:
    with running_central(tmp_path) as central:

        async def scenario() -> None:
            async with PilotClient(
                central.target, rpc_timeout=2.0, backoff_initial=0.1, backoff_max=0.3
            ) as client:
                request = pilots_pb2.RegisterPilotRequest(
                    pilot_id="p1",
                    resources=common_pb2.ResourceDescription(
                        site=SITE, ce=CE, queue=QUEUE, cores=1
                    ),
                    node=pilots_pb2.NodeInfo(hostname="wn", cores=1),
                )
                assert (await client.register(request, give_up_after=5.0)).pilot_id == "p1"
                await asyncio.to_thread(central.stop)
                with pytest.raises(CentralUnreachableError):
                    await client.register(request, give_up_after=1.5)
                await asyncio.to_thread(central.start)
                back = time.monotonic()
                assert (await client.register(request, give_up_after=20.0)).pilot_id == "p1"
                # The channel's reconnect back-off is capped at 10 s (+20 % jitter).
                assert time.monotonic() - back < 13.0

        asyncio.run(scenario())
