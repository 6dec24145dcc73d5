"""An in-process central (real store, real gRPC server on 127.0.0.1:0) for async tests.

    def test_x(tmp_path: Path) -> None:
        async def body() -> None:
            async with inprocess_central(tmp_path) as env:
                await env.jobs.SubmitJobs(..., metadata=env.as_user("alice"))
        run(body())

pytest-asyncio is not used: `run` drives a coroutine with a hard timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from central.config import CentralConfig, config_from_dict
from central.server import AgentPeriods, Central, serving
from gridpilot.channel import open_channel
from gridpilot.v1 import (
    data_pb2_grpc,
    jobs_pb2_grpc,
    pilots_pb2_grpc,
    sandboxes_pb2_grpc,
    sitedirectors_pb2_grpc,
)
from tests.support.central_process import default_config, merge

T = TypeVar("T")

Metadata = tuple[tuple[str, str], ...]


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def as_user(user: str, group: str = "belle") -> Metadata:
    return (("x-gridpilot-user", user), ("x-gridpilot-group", group))


def make_config(tmp_path: Path, overrides: dict[str, Any] | None = None) -> CentralConfig:
    """The default test configuration (see central_process.default_config), validated."""
    data = merge(default_config(tmp_path), overrides or {})
    for se in data.get("storage_elements", []):
        if se["url"].startswith("file://"):
            Path(se["url"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return config_from_dict(data)


@dataclass
class Env:
    central: Central
    channel: grpc.aio.Channel
    target: str
    jobs: jobs_pb2_grpc.JobServiceAsyncStub
    pilots: pilots_pb2_grpc.PilotServiceAsyncStub
    directors: sitedirectors_pb2_grpc.SiteDirectorServiceAsyncStub
    data: data_pb2_grpc.DataServiceAsyncStub
    sandboxes: sandboxes_pb2_grpc.SandboxServiceAsyncStub

    @staticmethod
    def as_user(user: str, group: str = "belle") -> Metadata:
        return as_user(user, group)


@asynccontextmanager
async def inprocess_central(
    tmp_path: Path,
    overrides: dict[str, Any] | None = None,
    *,
    clock: Callable[[], float] | None = None,
    periods: AgentPeriods | None = None,
) -> AsyncIterator[Env]:
    config = make_config(tmp_path, overrides)
    kwargs: dict[str, Any] = {"periods": periods}
    if clock is not None:
        kwargs["clock"] = clock
    async with serving(config, **kwargs) as running:
        channel = open_channel(running.target)
        try:
            yield Env(
                central=running.central,
                channel=channel,
                target=running.target,
                jobs=jobs_pb2_grpc.JobServiceStub(channel),
                pilots=pilots_pb2_grpc.PilotServiceStub(channel),
                directors=sitedirectors_pb2_grpc.SiteDirectorServiceStub(channel),
                data=data_pb2_grpc.DataServiceStub(channel),
                sandboxes=sandboxes_pb2_grpc.SandboxServiceStub(channel),
            )
        finally:
            await channel.close()
