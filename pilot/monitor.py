"""The resource monitor: samples running jobs between heartbeats and watches the work dir.

Sampling more often than heartbeats keeps each job's CPU high-water mark close to the truth
when a payload step ends and its orphans are reparented away before the next heartbeat. A
work dir below the node minimum stops matching until space comes back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from gridpilot.logs import get_logger
from pilot.job import RunningJob
from pilot.node import MIB, disk_free_bytes
from pilot.proctree import session_index
from pilot.waiting import wait_first

if TYPE_CHECKING:
    from pilot.pilot import Pilot

log = get_logger(__name__)

MAX_SAMPLE_PERIOD = 10.0


def sample_jobs(work_dir: Path, jobs: list[RunningJob]) -> int:
    """Refresh every running job's measurements; return the work dir's free bytes."""
    running = [job for job in jobs if job.running]
    index = session_index(job.pid for job in running)
    for job in running:
        job.measure(index.get(job.pid))
    return disk_free_bytes(work_dir)


class ResourceMonitor:
    def __init__(self, pilot: Pilot) -> None:
        self._pilot = pilot

    async def run(self) -> None:
        pilot, s = self._pilot, self._pilot.settings
        period = s.sample_period or min(pilot.heartbeat_period, MAX_SAMPLE_PERIOD)
        min_free = s.node_limits.min_disk_free_mb * MIB
        while not pilot.finished.is_set():
            jobs = list(pilot.jobs.values())
            free = await asyncio.to_thread(sample_jobs, s.work_dir, jobs)
            low = free < min_free
            if low != pilot.low_disk:
                log.warning(
                    "pilot.disk_low" if low else "pilot.disk_ok",
                    pilot_id=pilot.pilot_id,
                    free_mb=free // MIB,
                    minimum_mb=s.node_limits.min_disk_free_mb,
                )
                pilot.low_disk = low
            await wait_first(pilot.finished, max_wait=period)
