"""Shared pieces of the security tests: expecting a refusal, small request builders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from gridpilot.v1 import common_pb2, jobs_pb2


def refused(call: Callable[[], Any], code: grpc.StatusCode) -> str:
    """Run a blocking call that must fail with `code`; its details."""

    def complete() -> None:
        result = call()
        # A streaming call fails when read.
        if hasattr(result, "__iter__") and not isinstance(result, bytes):
            list(result)

    with pytest.raises(grpc.RpcError) as err:
        complete()
    error: Any = err.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    return str(error.details() or "")


async def refused_async(call: Callable[[], Awaitable[Any]], code: grpc.StatusCode) -> str:
    """Await a call that must fail with `code`; its details."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call()
    assert err.value.code() == code, f"{err.value.code()}: {err.value.details()}"
    return err.value.details() or ""


def spec(**kw: Any) -> common_pb2.JobSpec:
    fields: dict[str, Any] = {"project": "proj1", "release": "release-08-00-00"}
    fields.update(kw)
    return common_pb2.JobSpec(**fields)


def by_ids(*job_ids: int) -> jobs_pb2.JobSelection:
    return jobs_pb2.JobSelection(job_ids=list(job_ids))
