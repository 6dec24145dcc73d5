"""PilotService: registration, job requests, the session stream and job reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from central.logic import pilot_flow, reports, tokens
from central.logic.access import check_job_report, check_pilot_id, check_pilot_resources
from central.logic.errors import InvalidArgumentError
from central.logic.identity import require_caller
from central.logic.sessions import Command, CommandKind
from central.models.job_states import JobStatus
from central.rpc import convert
from gridpilot.enums import job_status_to_proto
from gridpilot.logs import get_logger
from gridpilot.v1 import pilots_pb2, pilots_pb2_grpc

if TYPE_CHECKING:
    from central.server import Central

log = get_logger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

_KIND = {
    CommandKind.KILL_JOB: pilots_pb2.Command.KIND_KILL_JOB,
    CommandKind.DRAIN: pilots_pb2.Command.KIND_DRAIN,
}


def _down(command: Command) -> pilots_pb2.PilotSessionDown:
    return pilots_pb2.PilotSessionDown(
        command=pilots_pb2.Command(
            kind=_KIND[command.kind], job_id=command.job_id, reason=command.reason
        )
    )


class PilotServicer(pilots_pb2_grpc.PilotServiceServicer):
    def __init__(self, central: Central) -> None:
        self.c = central

    async def RegisterPilot(
        self, request: pilots_pb2.RegisterPilotRequest, context: Context
    ) -> pilots_pb2.RegisterPilotResponse:
        c = self.c
        resources = convert.resources(request.resources)
        await tokens.admit_pilot(
            c.store,
            c.security,
            c.config,
            require_caller(),
            pilot_id=request.pilot_id,
            resources=resources,
        )
        pilot_id = await pilot_flow.register_pilot(
            c.store,
            c.config,
            pilot_id=request.pilot_id,
            resources=resources,
            hostname=request.node.hostname,
            now=c.clock(),
        )
        token, claims = c.security.pilot_token(
            pilot_id, resources.site, resources.ce, resources.queue
        )
        return pilots_pb2.RegisterPilotResponse(
            pilot_id=pilot_id,
            heartbeat_period=c.config.central.heartbeat_period,
            pilot_token=token,
            pilot_token_expires_unix=float(claims.exp),
        )

    async def RequestJob(
        self, request: pilots_pb2.RequestJobRequest, context: Context
    ) -> pilots_pb2.RequestJobResponse:
        c = self.c
        caller = require_caller()
        resources = convert.resources(request.resources)
        pilot_id = request.pilot_id or caller.pilot_id
        check_pilot_id(caller, pilot_id)
        check_pilot_resources(caller, resources)
        assignment = await pilot_flow.request_job(
            c.store,
            c.matcher,
            c.batcher,
            c.config,
            c.ses,
            heartbeats=c.heartbeats,
            pilot_id=pilot_id,
            resources=resources,
            now=c.clock(),
            site_banned=c.security.bans.site_banned,
        )
        if assignment is None:
            return pilots_pb2.RequestJobResponse()
        job = assignment.job
        job_token = c.security.job_token(job.job_id, job.attempt, pilot_id, resources.site)
        return pilots_pb2.RequestJobResponse(job=convert.matched_job(assignment, job_token))

    async def PilotSession(
        self, request_iterator: AsyncIterator[pilots_pb2.PilotSessionUp], context: Context
    ) -> AsyncIterator[pilots_pb2.PilotSessionDown]:
        c = self.c
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if first.WhichOneof("item") != "hello" or not first.hello.pilot_id:
            raise InvalidArgumentError("a session starts with a SessionHello naming the pilot")
        pilot_id = first.hello.pilot_id
        check_pilot_id(require_caller(), pilot_id)
        queue = c.sessions.open(pilot_id)
        log.info("session.opened", pilot_id=pilot_id, running=len(first.hello.running_job_ids))
        reader = asyncio.create_task(self._read(pilot_id, request_iterator))
        getter: asyncio.Task[Command | None] | None = None
        try:
            await pilot_flow.session_hello(
                c.store,
                c.sessions,
                c.heartbeats,
                pilot_id=pilot_id,
                running_job_ids=list(first.hello.running_job_ids),
                now=c.clock(),
            )
            while True:
                getter = getter or asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    command = getter.result()
                    getter = None
                    if command is None:
                        break  # replaced by a newer session, or central is stopping
                    yield _down(command)
                elif reader in done:
                    reader.result()  # re-raise a read error
                    break
        finally:
            for task in (getter, reader):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            c.sessions.close(pilot_id, queue)
            log.info("session.closed", pilot_id=pilot_id)

    async def _read(
        self, pilot_id: str, request_iterator: AsyncIterator[pilots_pb2.PilotSessionUp]
    ) -> None:
        c = self.c
        async for up in request_iterator:
            item = up.WhichOneof("item")
            now = c.clock()
            if item == "heartbeat":
                hb = up.heartbeat
                c.heartbeats.add(
                    pilot_id,
                    [convert.heartbeat_record(b, now) for b in hb.jobs],
                    now,
                    idle=hb.idle,
                )
            elif item == "hello":
                await pilot_flow.session_hello(
                    c.store,
                    c.sessions,
                    c.heartbeats,
                    pilot_id=pilot_id,
                    running_job_ids=list(up.hello.running_job_ids),
                    now=now,
                )

    async def ReportJobStatus(
        self, request: pilots_pb2.ReportJobStatusRequest, context: Context
    ) -> pilots_pb2.ReportJobStatusResponse:
        c = self.c
        await check_job_report(c.store, require_caller(), request.job_id, request.attempt)
        await reports.report_status(
            c.store,
            job_id=request.job_id,
            attempt=request.attempt,
            status=convert.job_status(request.status),
            minor_status=request.minor_status,
            application_status=request.application_status,
            now=c.clock(),
        )
        return pilots_pb2.ReportJobStatusResponse()

    async def FinishJob(
        self, request: pilots_pb2.FinishJobRequest, context: Context
    ) -> pilots_pb2.FinishJobResponse:
        c = self.c
        await check_job_report(c.store, require_caller(), request.job_id, request.attempt)
        report = reports.FinishReport(
            job_id=request.job_id,
            attempt=request.attempt,
            category=convert.exit_category(request.exit_category),
            exit_code=request.exit_code,
            message=request.message,
            output_sandbox=request.output_sandbox,
            outputs=[convert.reported_output(o) for o in request.outputs],
            cpu_seconds=request.cpu_seconds,
            wall_seconds=request.wall_seconds,
        )
        if report.category == reports.ExitCategory.PILOT_TERMINATED:
            job = await reports.end_terminated_attempt(
                c.store,
                c.matcher,
                report,
                max_rescheduling=c.config.central.max_rescheduling,
                now=c.clock(),
            )
        else:
            job = await reports.finish_job(c.store, c.ses, report, c.clock())
        if job.status == JobStatus.COMPLETED:
            c.wake_failover()
        return pilots_pb2.FinishJobResponse(status=job_status_to_proto(job.status))

    async def ReportPilotEnd(
        self, request: pilots_pb2.ReportPilotEndRequest, context: Context
    ) -> pilots_pb2.ReportPilotEndResponse:
        c = self.c
        check_pilot_id(require_caller(), request.pilot_id)
        await pilot_flow.report_pilot_end(
            c.store, request.pilot_id, request.reason, request.jobs_run, c.clock()
        )
        return pilots_pb2.ReportPilotEndResponse()
