"""The pilot's session stream: SessionHello, then a Heartbeat every period; commands down.

When the stream breaks (central restarts, network cut) it is reopened with capped back-off;
the hello after a reconnect lists the running jobs so central can resend pending kills.
Payloads keep running meanwhile: a short outage must not cost jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import grpc

from gridpilot.logs import get_logger
from gridpilot.v1 import pilots_pb2
from pilot.client import STREAM_ERRORS
from pilot.job import RunningJob
from pilot.node import disk_free_bytes, load_average
from pilot.proctree import session_index

if TYPE_CHECKING:
    from pathlib import Path

    from pilot.client import SessionCall
    from pilot.pilot import Pilot

log = get_logger(__name__)


def build_heartbeat(work_dir: Path, jobs: list[RunningJob], idle: bool) -> pilots_pb2.Heartbeat:
    """Measure the node and every running job (one process-table scan for all of them)."""
    load = load_average()
    try:
        disk = disk_free_bytes(work_dir)
    except OSError:
        disk = 0
    index = session_index(job.pid for job in jobs)
    return pilots_pb2.Heartbeat(
        load_average=load,
        disk_free_bytes=disk,
        idle=idle,
        jobs=[job.heartbeat(load, index.get(job.pid)) for job in jobs],
    )


class SessionLoop:
    def __init__(self, pilot: Pilot) -> None:
        self._pilot = pilot
        self.sessions_opened = 0
        self.heartbeats_sent = 0

    async def run(self) -> None:
        pilot = self._pilot
        backoff = pilot.client.new_backoff()
        while not pilot.finished.is_set():
            opened = time.monotonic()
            try:
                await self._one_session()
            except STREAM_ERRORS as exc:
                code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "-"
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
                log.warning("session.broken", pilot_id=pilot.pilot_id, code=code, error=detail)
            if pilot.finished.is_set():
                break
            # A session that lived a few periods was healthy: start the back-off afresh.
            if time.monotonic() - opened > 3 * pilot.heartbeat_period:
                backoff.reset()
            delay = backoff.next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pilot.finished.wait(), timeout=delay)

    async def _one_session(self) -> None:
        pilot = self._pilot
        call = pilot.client.open_session()
        reader = asyncio.create_task(self._read_commands(call))
        finished = asyncio.create_task(pilot.finished.wait())
        try:
            hello = pilots_pb2.SessionHello(
                pilot_id=pilot.pilot_id, running_job_ids=sorted(pilot.jobs)
            )
            await call.write(pilots_pb2.PilotSessionUp(hello=hello))
            self.sessions_opened += 1
            log.info(
                "session.opened",
                pilot_id=pilot.pilot_id,
                running_jobs=len(hello.running_job_ids),
            )
            while not pilot.finished.is_set():
                jobs = [job for job in pilot.jobs.values() if job.running]
                heartbeat = await asyncio.to_thread(
                    build_heartbeat, pilot.settings.work_dir, jobs, pilot.idle
                )
                await call.write(pilots_pb2.PilotSessionUp(heartbeat=heartbeat))
                self.heartbeats_sent += 1
                log.debug("session.heartbeat", pilot_id=pilot.pilot_id, jobs=len(jobs))
                done, _ = await asyncio.wait(
                    {reader, finished},
                    timeout=pilot.heartbeat_period,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if reader in done:
                    reader.result()  # raises the stream's error, if it failed
                    log.warning("session.closed_by_central", pilot_id=pilot.pilot_id)
                    return
        finally:
            finished.cancel()
            reader.cancel()
            await pilot.client.close_session(call)

    async def _read_commands(self, call: SessionCall) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            assert isinstance(message, pilots_pb2.PilotSessionDown)
            if message.HasField("command"):
                self._obey(message.command)

    def _obey(self, command: pilots_pb2.Command) -> None:
        pilot = self._pilot
        kind = pilots_pb2.Command.Kind.Name(command.kind)
        log.info(
            "session.command",
            pilot_id=pilot.pilot_id,
            kind=kind,
            job_id=command.job_id,
            reason=command.reason,
        )
        if command.kind == pilots_pb2.Command.KIND_KILL_JOB:
            pilot.kill_job(command.job_id, command.reason)
        elif command.kind == pilots_pb2.Command.KIND_DRAIN:
            pilot.drain(command.reason or "drain command")
        else:
            log.warning("session.unknown_command", pilot_id=pilot.pilot_id, kind=kind)
