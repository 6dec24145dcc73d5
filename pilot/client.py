"""The pilot's view of central: the PilotService stubs with retries for transient errors.

Central restarts, network blips and overloaded replicas are normal on a grid, so UNAVAILABLE
and DEADLINE_EXCEEDED are retried with capped back-off; every other error is an answer
(central refused the request) and goes straight to the caller. One channel serves the whole
pilot: its reconnect back-off is capped at a few seconds (gridpilot.channel), so it finds
central again soon after a restart without being replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc

from gridpilot.channel import ClientSecurity, MutableToken, open_channel
from gridpilot.logs import get_logger
from gridpilot.v1 import pilots_pb2, pilots_pb2_grpc
from pilot.backoff import Backoff

if TYPE_CHECKING:
    from gridpilot.v1.pilots_pb2_grpc import PilotServiceAsyncStub

log = get_logger(__name__)

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# What a broken stream raises: a status, or grpc's own errors when the call is already gone
# (e.g. ExecuteBatchError, an InternalError, when half-closing a stream central dropped).
STREAM_ERRORS: tuple[type[Exception], ...] = (
    grpc.aio.AioRpcError,
    grpc.aio.InternalError,
    grpc.aio.UsageError,
    asyncio.InvalidStateError,
)

ResponseT = TypeVar("ResponseT")

SessionCall = grpc.aio.StreamStreamCall[pilots_pb2.PilotSessionUp, pilots_pb2.PilotSessionDown]


class CentralUnreachableError(ConnectionError):
    """Central did not answer within the retry window."""

    def __init__(self, what: str, waited: float, last: grpc.aio.AioRpcError) -> None:
        super().__init__(
            f"{what}: central unreachable for {waited:.0f} s "
            f"(last error {last.code().name}: {last.details()})"
        )
        self.what = what
        self.last = last


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in RETRYABLE_CODES


class PilotClient:
    """One channel to central and the PilotService calls a pilot makes.

    The channel's token starts as the registration token; `use_token` switches every later
    call (and the next session stream) to the pilot session token central answered with.
    """

    def __init__(
        self,
        target: str,
        security: ClientSecurity,
        *,
        rpc_timeout: float = 30.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.target = target
        self.rpc_timeout = rpc_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        source = security.token
        self._token = (
            source if isinstance(source, MutableToken) else MutableToken(security.current_token())
        )
        self._channel = open_channel(target, ClientSecurity(security.tls, self._token))
        self._stub: PilotServiceAsyncStub = pilots_pb2_grpc.PilotServiceStub(self._channel)

    def use_token(self, token: str) -> None:
        self._token.set(token)

    def new_backoff(self) -> Backoff:
        return Backoff(initial=self._backoff_initial, maximum=self._backoff_max)

    async def __aenter__(self) -> PilotClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def call(
        self,
        what: str,
        method: Callable[[PilotServiceAsyncStub], Awaitable[ResponseT]],
        *,
        give_up_after: float | None = None,
    ) -> ResponseT:
        """Run `method(stub)` until it answers; retry transient errors with back-off.

        `give_up_after` (seconds, None = never) bounds the whole retry loop; past it the last
        error is raised as CentralUnreachableError. Non-transient errors raise at once.
        """
        backoff = self.new_backoff()
        start = time.monotonic()
        while True:
            try:
                return await method(self._stub)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE_CODES:
                    raise
                waited = time.monotonic() - start
                delay = backoff.next_delay()
                if give_up_after is not None and waited + delay > give_up_after:
                    raise CentralUnreachableError(what, waited, exc) from exc
                log.warning(
                    "central.retry",
                    call=what,
                    code=exc.code().name,
                    attempt=backoff.attempts,
                    delay=round(delay, 2),
                )
                await asyncio.sleep(delay)

    async def register(
        self, request: pilots_pb2.RegisterPilotRequest, *, give_up_after: float | None = None
    ) -> pilots_pb2.RegisterPilotResponse:
        return await self.call(
            "RegisterPilot",
            lambda stub: stub.RegisterPilot(request, timeout=self.rpc_timeout),
            give_up_after=give_up_after,
        )

    async def request_job(
        self, request: pilots_pb2.RequestJobRequest, *, give_up_after: float | None = None
    ) -> pilots_pb2.RequestJobResponse:
        return await self.call(
            "RequestJob",
            lambda stub: stub.RequestJob(request, timeout=self.rpc_timeout),
            give_up_after=give_up_after,
        )

    async def finish_job(
        self, request: pilots_pb2.FinishJobRequest, *, give_up_after: float | None = None
    ) -> pilots_pb2.FinishJobResponse:
        return await self.call(
            "FinishJob",
            lambda stub: stub.FinishJob(request, timeout=self.rpc_timeout),
            give_up_after=give_up_after,
        )

    async def report_pilot_end(
        self, request: pilots_pb2.ReportPilotEndRequest, *, give_up_after: float | None = None
    ) -> pilots_pb2.ReportPilotEndResponse:
        return await self.call(
            "ReportPilotEnd",
            lambda stub: stub.ReportPilotEnd(request, timeout=self.rpc_timeout),
            give_up_after=give_up_after,
        )

    def open_session(self) -> SessionCall:
        """A new PilotSession stream (no deadline: it lives as long as the pilot)."""
        call: SessionCall = self._stub.PilotSession()
        return call

    async def close_session(self, call: SessionCall) -> None:
        """Half-close (central sees a clean end of stream), then drop the call."""
        if not call.done():
            with contextlib.suppress(*STREAM_ERRORS):
                await call.done_writing()
        call.cancel()
