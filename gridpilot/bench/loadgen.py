"""Load-generator processes: pilots (sessions + a closed match loop) and the echo baseline.

Each worker process has its own asyncio loop (uvloop) and its own channel, with the same
client options and TLS as every gridpilot client. Tokens travel as per-call metadata, so one
channel carries many pilots, as one site's pilots would share a NAT'd link.
"""

from __future__ import annotations

import asyncio
import multiprocessing.connection
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import msgspec
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gridpilot.bench.central_proc import MAX_MESSAGE_BYTES
from gridpilot.channel import ClientSecurity, open_channel
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import common_pb2, pilots_pb2, pilots_pb2_grpc

if TYPE_CHECKING:
    from gridpilot.v1.pilots_pb2_grpc import PilotServiceAsyncStub

SessionCall = grpc.aio.StreamStreamCall[pilots_pb2.PilotSessionUp, pilots_pb2.PilotSessionDown]

CALL_TIMEOUT = 30.0
# A slot that found nothing waits a little before asking again, like a real pilot would.
NO_MATCH_PAUSE = 0.05
MAX_ERRORS_KEPT = 5
PILOT_CPU_TIME = 100_000
REGISTER_CONCURRENCY = 32
# Real pilots each have their own connection; a thousand session streams on one HTTP/2
# connection get reset by gRPC, so sessions are spread over connections of this many.
SESSIONS_PER_CONNECTION = 50
SESSION_ATTEMPTS = 20
SESSION_RETRY_PAUSE = 0.2


class PilotSpec(msgspec.Struct, frozen=True):
    registration_token: str
    site: str
    ce: str
    queue: str


class WorkerTask(msgspec.Struct, frozen=True, kw_only=True):
    mode: str  # "pilots" or "echo"
    target: str
    ca_path: str
    pilots: list[PilotSpec] = []
    concurrency: int = 1
    duration: float = 10.0
    heartbeat_period: float = 10.0


class WorkerResult(msgspec.Struct, kw_only=True):
    matched: list[int] = []
    latencies: list[float] = []
    no_match: int = 0
    echo_calls: int = 0
    heartbeats: int = 0
    sessions: int = 0
    session_retries: int = 0
    errors: int = 0
    error_samples: list[str] = []
    elapsed: float = 0.0


def client_channel(target: str, ca_path: str, connection: int = 0) -> grpc.aio.Channel:
    """The gridpilot client channel (TLS, CHANNEL_OPTIONS); no token: sent per call.

    Channels with different `connection` numbers get their own TCP+TLS connection (gRPC
    shares one between channels with identical arguments)."""
    security = ClientSecurity(tls=ClientTls(ca=Path(ca_path)), token=None)
    return open_channel(
        target,
        security,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("gridpilot.bench.connection", connection),
        ],
    )


def _bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


class _Run:
    def __init__(self, task: WorkerTask) -> None:
        self.task = task
        self.result = WorkerResult()

    def error(self, exc: BaseException) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < MAX_ERRORS_KEPT:
            self.result.error_samples.append(f"{type(exc).__name__}: {exc}"[:500])


@dataclass(frozen=True)
class _Registered:
    pilot_id: str
    token: str
    resources: common_pb2.ResourceDescription


async def _register(stub: PilotServiceAsyncStub, pilot: PilotSpec) -> _Registered:
    resources = common_pb2.ResourceDescription(
        site=pilot.site,
        ce=pilot.ce,
        queue=pilot.queue,
        cpu_time_left=PILOT_CPU_TIME,
        cores=1,
        memory_mb=4000,
    )
    response = await stub.RegisterPilot(
        pilots_pb2.RegisterPilotRequest(
            resources=resources, node=pilots_pb2.NodeInfo(hostname="bench", cores=1)
        ),
        metadata=_bearer(pilot.registration_token),
        timeout=CALL_TIMEOUT,
    )
    return _Registered(response.pilot_id, response.pilot_token, resources)


async def _session(
    run: _Run, stub: PilotServiceAsyncStub, pilot_id: str, token: str, end: float
) -> None:
    """Hello, then a heartbeat every period until `end`; a broken stream is reopened, as the
    pilot's own session loop does (counted in `session_retries`, not as an error)."""
    period = run.task.heartbeat_period
    # Pilots start over one period, as they would on a real grid, not in one instant.
    await asyncio.sleep(min(period, 2.0) * random.random())
    opened = False
    for _attempt in range(SESSION_ATTEMPTS):
        if time.monotonic() >= end:
            break
        call: SessionCall = stub.PilotSession(metadata=_bearer(token))
        try:
            hello = pilots_pb2.SessionHello(pilot_id=pilot_id)
            await call.write(pilots_pb2.PilotSessionUp(hello=hello))
            if not opened:
                opened = True
                run.result.sessions += 1
            beat = pilots_pb2.PilotSessionUp(heartbeat=pilots_pb2.Heartbeat(idle=False))
            while time.monotonic() + period < end:
                await asyncio.sleep(period)
                await call.write(beat)
                run.result.heartbeats += 1
            await call.done_writing()
            return
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            run.result.session_retries += 1
            await asyncio.sleep(SESSION_RETRY_PAUSE)
        finally:
            call.cancel()
    if not opened:
        run.error(RuntimeError(f"pilot {pilot_id}: no session after {SESSION_ATTEMPTS} tries"))


async def _match_loop(
    run: _Run, stub: PilotServiceAsyncStub, pilot: _Registered, end: float
) -> None:
    request = pilots_pb2.RequestJobRequest(pilot_id=pilot.pilot_id, resources=pilot.resources)
    token = pilot.token
    result = run.result
    while time.monotonic() < end:
        try:
            started = time.perf_counter()
            response = await stub.RequestJob(request, metadata=_bearer(token), timeout=CALL_TIMEOUT)
            latency = time.perf_counter() - started
            if not response.HasField("job"):
                result.no_match += 1
                await asyncio.sleep(NO_MATCH_PAUSE)
                continue
            job = response.job
            result.matched.append(job.job_id)
            result.latencies.append(latency)
            job_auth = _bearer(job.job_token)
            await stub.ReportJobStatus(
                pilots_pb2.ReportJobStatusRequest(
                    job_id=job.job_id,
                    attempt=job.attempt,
                    status=common_pb2.JOB_STATUS_RUNNING,
                    minor_status="Application",
                ),
                metadata=job_auth,
                timeout=CALL_TIMEOUT,
            )
            await stub.FinishJob(
                pilots_pb2.FinishJobRequest(
                    job_id=job.job_id,
                    attempt=job.attempt,
                    exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
                ),
                metadata=job_auth,
                timeout=CALL_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:
            run.error(exc)
            await asyncio.sleep(NO_MATCH_PAUSE)


async def _echo_loop(run: _Run, stub: health_pb2_grpc.HealthStub, end: float) -> None:
    request = health_pb2.HealthCheckRequest()
    while time.monotonic() < end:
        try:
            await stub.Check(request, timeout=CALL_TIMEOUT)
            run.result.echo_calls += 1
        except grpc.aio.AioRpcError as exc:
            run.error(exc)
            await asyncio.sleep(NO_MATCH_PAUSE)


async def _run_pilots(run: _Run, go: Any) -> None:
    task = run.task
    async with client_channel(task.target, task.ca_path) as channel:
        stub: PilotServiceAsyncStub = pilots_pb2_grpc.PilotServiceStub(channel)
        # Bounded, like a site director's pilots arriving over time, not all in one instant.
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def register(pilot: PilotSpec) -> _Registered:
            async with gate:
                return await _register(stub, pilot)

        registered = await asyncio.gather(*(register(p) for p in task.pilots))
        await _wait_go(go)
        started = time.monotonic()
        end = started + task.duration
        count = -(-len(registered) // SESSIONS_PER_CONNECTION)
        session_channels = [client_channel(task.target, task.ca_path, 1 + n) for n in range(count)]
        try:
            sessions = [
                asyncio.create_task(
                    _session(
                        run,
                        pilots_pb2_grpc.PilotServiceStub(
                            session_channels[k // SESSIONS_PER_CONNECTION]
                        ),
                        p.pilot_id,
                        p.token,
                        end,
                    )
                )
                for k, p in enumerate(registered)
            ]
            loops = [
                _match_loop(run, stub, registered[k % len(registered)], end)
                for k in range(task.concurrency)
            ]
            await asyncio.gather(*loops)
            run.result.elapsed = time.monotonic() - started
            await asyncio.gather(*sessions)
        finally:
            for session_channel in session_channels:
                await session_channel.close()


async def _run_echo(run: _Run, go: Any) -> None:
    task = run.task
    async with client_channel(task.target, task.ca_path) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
        await _wait_go(go)
        started = time.monotonic()
        end = started + task.duration
        await asyncio.gather(*(_echo_loop(run, stub, end) for _ in range(task.concurrency)))
        run.result.elapsed = time.monotonic() - started


async def _wait_go(go: Any) -> None:
    # The parent sets the event once every worker is ready (registered, connected).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.wait)


def worker_main(task_bytes: bytes, go: Any, ready: multiprocessing.connection.Connection) -> None:
    """Entry point of one worker process: `ready` gets "ready", then the encoded result."""
    task = msgspec.msgpack.decode(task_bytes, type=WorkerTask)
    run = _Run(task)

    class _Go:
        def wait(self) -> None:
            ready.send_bytes(b"ready")
            go.wait()

    coro = _run_pilots(run, _Go()) if task.mode == "pilots" else _run_echo(run, _Go())
    try:
        uvloop.run(coro)
    except grpc.aio.AioRpcError as exc:
        # Only registration and the echo warm-up call raise out of the run: say where.
        run.error(RuntimeError(f"before the start ({task.mode}): {exc.code()} {exc.details()}"))
    ready.send_bytes(msgspec.msgpack.encode(run.result))
