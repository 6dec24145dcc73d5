"""The match loop: ask central for a job whenever a slot is free, back off when none fits.

Stops on the first of: drain, termination, max jobs, the slot's time used up, idle timeout
(nothing running and no match for `idle_timeout` s), central unreachable with nothing running.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc

from gridpilot.logs import get_logger
from gridpilot.v1 import pilots_pb2
from pilot.backoff import Backoff
from pilot.client import CentralUnreachableError
from pilot.exit_codes import PilotExitCode
from pilot.waiting import wait_first

if TYPE_CHECKING:
    from pilot.pilot import Pilot

log = get_logger(__name__)

# While every slot is busy: how often to recheck limits that are not events (slot time).
_FULL_RECHECK = 1.0


class MatchLoop:
    def __init__(self, pilot: Pilot) -> None:
        self._pilot = pilot
        s = pilot.settings
        self.backoff = Backoff(initial=s.match_backoff_initial, maximum=s.match_backoff_max)
        self.requests = 0

    async def run(self) -> None:
        pilot, s = self._pilot, self._pilot.settings
        while not pilot.stop_matching.is_set():
            if s.max_jobs and pilot.jobs_run >= s.max_jobs:
                pilot.stop(f"max jobs reached ({s.max_jobs})")
                break
            if pilot.cpu_time_left <= 0:
                pilot.stop("slot time used up")
                break
            if pilot.free_cores() == 0 or pilot.low_disk:
                idle_for = time.monotonic() - pilot.last_activity
                if not pilot.jobs and idle_for >= s.idle_timeout:
                    pilot.stop(f"work dir low on disk for {idle_for:.0f} s")
                    break
                pilot.slot_freed.clear()
                await wait_first(pilot.slot_freed, pilot.stop_matching, max_wait=_FULL_RECHECK)
                continue
            answer = await self._request()
            if answer is None:
                break
            if answer.HasField("job"):
                pilot.idle = False
                self.backoff.reset()
                await pilot.launch(answer.job)
                continue
            pilot.idle = True
            idle_for = time.monotonic() - pilot.last_activity
            if not pilot.jobs and idle_for >= s.idle_timeout:
                pilot.stop(f"idle for {idle_for:.0f} s")
                break
            await wait_first(pilot.stop_matching, max_wait=self.backoff.next_delay())

    async def _request(self) -> pilots_pb2.RequestJobResponse | None:
        """One RequestJob (with retries); None when the loop must end."""
        pilot = self._pilot
        request = pilots_pb2.RequestJobRequest(
            pilot_id=pilot.pilot_id, resources=pilot.free_resources()
        )
        self.requests += 1
        task = asyncio.create_task(
            pilot.client.request_job(request, give_up_after=pilot.settings.unreachable_timeout)
        )
        # Only a termination interrupts a request: a drained pilot still runs a job central
        # already committed to it, rather than leaving it to go stale.
        try:
            await wait_first(pilot.shutdown_event, task=task)
        finally:
            interrupted = not task.done()
            if interrupted:
                task.cancel()
        if interrupted:
            return None
        try:
            return task.result()
        except CentralUnreachableError as exc:
            if pilot.jobs:
                # Payloads keep running; keep trying for them (and for their reports).
                return pilots_pb2.RequestJobResponse()
            log.error("pilot.central_unreachable", pilot_id=pilot.pilot_id, error=str(exc))
            pilot.stop("central unreachable", PilotExitCode.CENTRAL_UNREACHABLE)
            return None
        except grpc.aio.AioRpcError as exc:
            # A refusal, not an outage (e.g. central lost the pilot record): poll slower.
            log.warning(
                "pilot.request_refused",
                pilot_id=pilot.pilot_id,
                code=exc.code().name,
                error=exc.details(),
            )
            return pilots_pb2.RequestJobResponse()
