"""The Pilot: register, pull jobs for free slots, run wrappers, heartbeat, obey commands.

    async with Pilot(settings) as pilot:
        code = await pilot.run()

`run()` is one asyncio.TaskGroup: the match loop (pilot/matching.py, in run itself), the
session stream (heartbeats up, commands down, pilot/session.py), a resource monitor, one
supervisor per running job and a watcher that kills every job when the pilot is terminated.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from gridpilot.logs import get_logger
from gridpilot.v1 import common_pb2, pilots_pb2
from pilot._version import __version__
from pilot.client import CentralUnreachableError, PilotClient
from pilot.exit_codes import PilotExitCode
from pilot.job import JobStartError, RunningJob, WrapperSettings
from pilot.matching import MatchLoop
from pilot.monitor import ResourceMonitor
from pilot.node import MIB, NodeCheckError, NodeInfo, check_node, detect_platform
from pilot.reports import finish_request, pilot_terminated_request
from pilot.session import SessionLoop
from pilot.settings import PilotSettings
from pilot.waiting import wait_first

log = get_logger(__name__)


class Pilot:
    def __init__(self, settings: PilotSettings, node: NodeInfo | None = None) -> None:
        self.settings = settings
        self.node = node
        self.pilot_id = settings.pilot_id
        self.heartbeat_period = settings.heartbeat_period or 30.0
        self.jobs: dict[int, RunningJob] = {}
        self.jobs_run = 0
        self.idle = False
        self.low_disk = False
        # Set to terminate: running jobs are killed and reported, the pilot exits TERMINATED.
        self.shutdown_event = asyncio.Event()
        # Set when the pilot's work is over (no matching, no jobs); loops end on it.
        self.finished = asyncio.Event()
        self.stop_matching = asyncio.Event()
        self.slot_freed = asyncio.Event()
        self._started = time.monotonic()
        self.last_activity = self._started
        self._end_reason = ""
        self._exit_code = PilotExitCode.OK
        self._terminated_by = ""
        self._supervisors: set[asyncio.Task[None]] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._client: PilotClient | None = None
        self._run_done = asyncio.Event()
        self._running = False
        self._slots = settings.slots or 1
        self._memory_mb = settings.memory_mb or 1
        self._platform = settings.platform or detect_platform()
        self._wrapper = WrapperSettings(
            central=settings.central,
            site=settings.site,
            software_setup=settings.software_setup,
            python=settings.wrapper_python,
            module=settings.wrapper_module,
            ca=settings.ca,
            insecure=settings.insecure,
        )

    async def __aenter__(self) -> Pilot:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._running:
            self.shutdown("pilot closed")
            await self._run_done.wait()

    # -- control (safe to call from signal handlers) -----------------------------------

    def shutdown(self, reason: str = "shutdown") -> None:
        """Terminate: kill running jobs, report them and the pilot's end, exit TERMINATED."""
        if not self.shutdown_event.is_set():
            log.warning("pilot.terminating", pilot_id=self.pilot_id, reason=reason)
            self._terminated_by = reason
            self.stop(f"terminated ({reason})", PilotExitCode.TERMINATED)
            self.shutdown_event.set()

    def drain(self, reason: str = "drain") -> None:
        """Take no new jobs; end once the running ones are done."""
        log.info("pilot.draining", pilot_id=self.pilot_id, reason=reason)
        self.stop(f"drained ({reason})")

    def stop(self, reason: str, code: PilotExitCode = PilotExitCode.OK) -> None:
        # The first reason wins, except that a termination overrides a gentler stop.
        if not self._end_reason or code == PilotExitCode.TERMINATED:
            self._end_reason, self._exit_code = reason, code
        self.stop_matching.set()

    # -- resources ----------------------------------------------------------------------

    @property
    def cpu_time_left(self) -> int:
        return int(self.settings.cpu_time - (time.monotonic() - self._started))

    def free_cores(self) -> int:
        return max(0, self._slots - sum(j.cores for j in self.jobs.values()))

    def free_memory_mb(self) -> int:
        return max(0, self._memory_mb - sum(j.memory_mb for j in self.jobs.values()))

    def free_resources(self) -> common_pb2.ResourceDescription:
        s = self.settings
        return common_pb2.ResourceDescription(
            site=s.site,
            ce=s.ce,
            queue=s.queue,
            platform=self._platform,
            cpu_time_left=max(0, self.cpu_time_left),
            cores=self.free_cores(),
            memory_mb=self.free_memory_mb(),
            tags=list(s.tags),
        )

    @property
    def client(self) -> PilotClient:
        if self._client is None:
            raise RuntimeError("the pilot is not running")
        return self._client

    # -- the run ------------------------------------------------------------------------

    async def run(self) -> PilotExitCode:
        self._running = True
        try:
            return await self._run()
        finally:
            self._running = False
            self._run_done.set()

    async def _run(self) -> PilotExitCode:
        s = self.settings
        node = self.node
        if node is None:
            try:
                node = await asyncio.to_thread(check_node, s.work_dir, s.node_limits)
            except NodeCheckError as exc:
                log.error("pilot.node_check_failed", pilot_id=s.pilot_id, error=str(exc))
                return PilotExitCode.NODE_CHECK_FAILED
            self.node = node
        self._slots = s.slots or node.cores
        self._memory_mb = s.memory_mb or node.memory_bytes // MIB
        # Known before the first request; the resource monitor keeps it current.
        self.low_disk = node.disk_free_bytes < s.node_limits.min_disk_free_mb * MIB
        self._client = PilotClient(
            s.central,
            s.security(),
            rpc_timeout=s.rpc_timeout,
            backoff_initial=s.retry_backoff_initial,
            backoff_max=s.retry_backoff_max,
        )
        try:
            code = await self._register()
            if code is not None:
                return code
            try:
                async with asyncio.TaskGroup() as tg:
                    self._tg = tg
                    tg.create_task(SessionLoop(self).run(), name="session")
                    tg.create_task(ResourceMonitor(self).run(), name="monitor")
                    tg.create_task(self._termination_watch(), name="termination")
                    await MatchLoop(self).run()
                    while self._supervisors:
                        await asyncio.wait(set(self._supervisors))
                    self.finished.set()
            except* Exception as group:
                await self._crashed(group.exceptions)
            await self._report_end()
            log.info(
                "pilot.end",
                pilot_id=self.pilot_id,
                reason=self._end_reason,
                jobs_run=self.jobs_run,
                exit_code=int(self._exit_code),
            )
            return self._exit_code
        finally:
            await self._client.close()

    async def _register(self) -> PilotExitCode | None:
        s, node = self.settings, self.node
        assert node is not None
        request = pilots_pb2.RegisterPilotRequest(
            pilot_id=s.pilot_id,
            resources=self.free_resources(),
            node=pilots_pb2.NodeInfo(
                hostname=node.hostname,
                cores=node.cores,
                memory_bytes=node.memory_bytes,
                disk_free_bytes=node.disk_free_bytes,
                load_average=node.load_average,
                platform=node.platform,
                python_version=node.python_version,
            ),
            version=__version__,
        )
        try:
            answer = await self.client.register(request, give_up_after=s.unreachable_timeout)
        except CentralUnreachableError as exc:
            log.error("pilot.central_unreachable", pilot_id=s.pilot_id, error=str(exc))
            return PilotExitCode.CENTRAL_UNREACHABLE
        except grpc.aio.AioRpcError as exc:
            log.error(
                "pilot.registration_refused",
                pilot_id=s.pilot_id,
                code=exc.code().name,
                error=exc.details(),
            )
            return PilotExitCode.REGISTRATION_FAILED
        self.pilot_id = answer.pilot_id or s.pilot_id
        if not answer.pilot_token:
            log.error("pilot.no_session_token", pilot_id=self.pilot_id)
            return PilotExitCode.REGISTRATION_FAILED
        # The registration token is spent: every later call acts as this pilot.
        self.client.use_token(answer.pilot_token)
        if s.heartbeat_period is None and answer.heartbeat_period > 0:
            self.heartbeat_period = answer.heartbeat_period
        log.info(
            "pilot.registered",
            pilot_id=self.pilot_id,
            site=s.site,
            slots=self._slots,
            memory_mb=self._memory_mb,
            platform=self._platform,
            heartbeat_period=self.heartbeat_period,
        )
        return None

    async def launch(self, matched: pilots_pb2.MatchedJob) -> None:
        s = self.settings
        self.last_activity = time.monotonic()
        if self.shutdown_event.is_set():
            reason = self._terminated_by or "pilot internal error"
            await self._report(pilot_terminated_request(matched, reason))
            return
        cores = max(1, matched.spec.number_of_processors)
        memory = max(matched.spec.max_ram_mb, self._memory_mb * cores // max(1, self._slots))
        log.info(
            "job.matched",
            pilot_id=self.pilot_id,
            job_id=matched.job_id,
            attempt=matched.attempt,
            cores=cores,
        )
        try:
            job = RunningJob.start(
                matched,
                s.work_dir,
                self._wrapper,
                cores=cores,
                memory_mb=memory,
                wall_limit=self.cpu_time_left if s.pass_wall_limit else None,
                pilot_id=self.pilot_id,
            )
        except JobStartError as exc:
            log.error(
                "job.start_failed", pilot_id=self.pilot_id, job_id=matched.job_id, error=str(exc)
            )
            await self._report(
                pilots_pb2.FinishJobRequest(
                    job_id=matched.job_id,
                    attempt=matched.attempt,
                    exit_category=common_pb2.EXIT_CATEGORY_WRAPPER_ERROR,
                    message=str(exc),
                )
            )
            return
        self.jobs[job.job_id] = job
        self.jobs_run += 1
        assert self._tg is not None
        task = self._tg.create_task(self._supervise(job), name=f"job-{job.job_id}")
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    async def _supervise(self, job: RunningJob) -> None:
        # Cancelled (the pilot crashed): the job stays in self.jobs for _kill_all_now.
        returncode = await job.wait()
        del self.jobs[job.job_id]
        self.last_activity = time.monotonic()
        self.slot_freed.set()
        if job.kill_task is not None:
            await job.kill_task
        await job.reap_leftovers(self.settings.kill_grace)
        log.info(
            "job.wrapper_exited",
            pilot_id=self.pilot_id,
            job_id=job.job_id,
            attempt=job.attempt,
            returncode=returncode,
            reported=job.report_done(),
        )
        if not job.report_done():
            await self._report(finish_request(job, returncode))

    async def _report(self, request: pilots_pb2.FinishJobRequest) -> None:
        ending = self.shutdown_event.is_set()
        s = self.settings
        try:
            answer = await self.client.finish_job(
                request,
                give_up_after=s.final_report_timeout if ending else s.unreachable_timeout,
            )
        except CentralUnreachableError as exc:
            log.error(
                "job.report_lost", pilot_id=self.pilot_id, job_id=request.job_id, error=str(exc)
            )
        except grpc.aio.AioRpcError as exc:
            # E.g. FAILED_PRECONDITION: the attempt was rescheduled meanwhile.
            log.warning(
                "job.report_refused",
                pilot_id=self.pilot_id,
                job_id=request.job_id,
                attempt=request.attempt,
                code=exc.code().name,
                error=exc.details(),
            )
        else:
            log.info(
                "job.reported",
                pilot_id=self.pilot_id,
                job_id=request.job_id,
                attempt=request.attempt,
                category=common_pb2.ExitCategory.Name(request.exit_category),
                status=common_pb2.JobStatus.Name(answer.status),
            )

    def kill_job(self, job_id: int, reason: str) -> bool:
        """Kill one job's process tree; its supervisor reports it Killed. False if unknown."""
        job = self.jobs.get(job_id)
        if job is None:
            log.warning("job.kill_unknown", pilot_id=self.pilot_id, job_id=job_id)
            return False
        if job.kill_reason is None:
            job.kill_reason = reason or "killed on request"
            log.info("job.killing", pilot_id=self.pilot_id, job_id=job_id, reason=job.kill_reason)
        job.kill(self.settings.kill_grace)
        return True

    async def _crashed(self, errors: tuple[Exception, ...]) -> None:
        for error in errors:
            log.error("pilot.crashed", pilot_id=self.pilot_id, error=repr(error))
        # Stop launching; _terminated_by stays as shutdown() set it (if it was called), since
        # only a pilot told to stop reports its jobs as PILOT_TERMINATED.
        self.shutdown_event.set()
        self._end_reason = f"internal error: {errors[0]!r}"
        self._exit_code = PilotExitCode.INTERNAL_ERROR
        await self._kill_all_now()

    async def _kill_all_now(self) -> None:
        """After a crash: kill, reap and report every job still on the node."""
        for job in list(self.jobs.values()):
            job.terminated_by = job.terminated_by or self._terminated_by or None
            try:
                await job.kill(0.0)
                returncode = await job.wait()
            except OSError as exc:
                log.error(
                    "job.cleanup_failed", pilot_id=self.pilot_id, job_id=job.job_id, error=repr(exc)
                )
                continue
            if not job.report_done():
                request = finish_request(job, returncode, pilot_error="pilot internal error")
                await self._report(request)
        self.jobs.clear()

    async def _report_end(self) -> None:
        request = pilots_pb2.ReportPilotEndRequest(
            pilot_id=self.pilot_id, reason=self._end_reason, jobs_run=self.jobs_run
        )
        # Ending because central is unreachable: one try, not another long wait.
        unreachable = self._exit_code == PilotExitCode.CENTRAL_UNREACHABLE
        try:
            await self.client.report_pilot_end(
                request, give_up_after=0.0 if unreachable else self.settings.final_report_timeout
            )
        except (CentralUnreachableError, grpc.aio.AioRpcError) as exc:
            log.error("pilot.end_report_failed", pilot_id=self.pilot_id, error=str(exc))

    async def _termination_watch(self) -> None:
        await wait_first(self.shutdown_event, self.finished)
        if not self.shutdown_event.is_set():
            return
        for job in list(self.jobs.values()):
            job.terminated_by = self._terminated_by
            job.kill(self.settings.kill_grace)
