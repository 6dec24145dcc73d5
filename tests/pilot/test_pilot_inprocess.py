"""The Pilot class in this process against a real central, with a scripted wrapper where a
test needs a wrapper to misbehave (crash, hang) on cue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gridpilot.v1 import common_pb2
from pilot.exit_codes import PilotExitCode
from pilot.node import NodeLimits, check_node
from pilot.pilot import Pilot
from pilot.settings import PilotSettings
from tests.pilot.support import Grid, grid_client, wait_until
from tests.support.central_process import CE, QUEUE, SITE, running_central

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _settings(grid: Grid, work: Path, **overrides: object) -> PilotSettings:
    values: dict[str, object] = {
        "central": grid.central.target,
        "site": SITE,
        "ce": CE,
        "queue": QUEUE,
        "work_dir": work,
        "slots": 1,
        "idle_timeout": 0.5,
        "kill_grace": 2.0,
        "wrapper_module": "tests.pilot.scripted_wrapper",
        "node_limits": NodeLimits(min_disk_free_mb=1),
        "match_backoff_initial": 0.2,
        "match_backoff_max": 0.5,
        "ca": grid.central.ca_path,
        "registration_token": grid.central.registration_token(),
    }
    values.update(overrides)
    return PilotSettings(**values)  # type: ignore[arg-type]


def test_wrapper_crash_is_reported_as_wrapper_error(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        [job_id] = grid.submit(1, job_name="exit:3")

        async def scenario() -> PilotExitCode:
            async with Pilot(_settings(grid, tmp_path / "work")) as pilot:
                code = await pilot.run()
                assert pilot.jobs_run == 1
                return code

        assert asyncio.run(scenario()) == PilotExitCode.OK
        job = grid.job(job_id).job
        assert job.status == common_pb2.JOB_STATUS_FAILED
        assert job.minor_status == "Job Wrapper Error"
        assert "wrapper exit code 3 without a final report" in job.application_status
        assert "something went badly wrong" in job.application_status


def test_closing_a_running_pilot_kills_and_reports_its_jobs(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        [job_id] = grid.submit(1, job_name="hang")
        work = tmp_path / "work"
        started = work / f"job_{job_id}_1" / "started"

        async def scenario() -> PilotExitCode:
            async with Pilot(_settings(grid, work, heartbeat_period=0.3)) as pilot:
                run = asyncio.create_task(pilot.run())
                await asyncio.to_thread(wait_until, started.exists, what="wrapper started")
                # Heartbeats with this job reach central while it runs.
                await asyncio.to_thread(
                    wait_until,
                    lambda: grid.job(job_id).last_heartbeat.wall_seconds > 0,
                    what="a heartbeat",
                )
            assert pilot.shutdown_event.is_set()
            return await run

        assert asyncio.run(scenario()) == PilotExitCode.TERMINATED
        # Stopped from outside, not the job's fault: rescheduled for a new attempt.
        job = grid.job(job_id).job
        assert job.status == common_pb2.JOB_STATUS_WAITING
        assert job.attempt == 2
        assert job.minor_status == "Pilot terminated: job rescheduled"


def test_low_disk_takes_no_job_and_ends_idle(tmp_path: Path) -> None:
    with running_central(tmp_path) as central, grid_client(central, tmp_path) as grid:
        [job_id] = grid.submit(1, job_name="report")
        work = tmp_path / "work"
        node = check_node(work, NodeLimits(min_disk_free_mb=1))
        # More free space required than any disk has: the node is "full" from the start.
        settings = _settings(grid, work, node_limits=NodeLimits(min_disk_free_mb=10**12))

        async def scenario() -> PilotExitCode:
            async with Pilot(settings, node=node) as pilot:
                code = await pilot.run()
                assert pilot.jobs_run == 0
                assert pilot.low_disk
                return code

        assert asyncio.run(scenario()) == PilotExitCode.OK
        assert grid.status(job_id) == "WAITING"
        [record] = grid.pilots()
        assert record.status_reason.startswith("work dir low on disk")
