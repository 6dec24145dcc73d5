"""gb2_job_kill on a running job: the pilot ends the payload's whole process tree and the job
ends Killed, with the way there in its history."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.support.e2e_grid import RELEASE, SITE_A, e2e_grid
from tests.support.processes import is_gone, processes_under, standin_processes

pytestmark = pytest.mark.e2e

PROJECT = "e2e_kill"


def test_killed_running_job_loses_its_payload_and_ends_killed(tmp_path: Path) -> None:
    with e2e_grid(tmp_path) as grid:
        steering = grid.write_steering()
        submitted = grid.cli(
            "gbasf2", str(steering), "-p", PROJECT, "-s", RELEASE, "--repetition", "1",
            "--basf2opt", "-n 600 --standin-seconds 120", "--force",
        )  # fmt: skip
        assert submitted.code == 0, submitted
        (job_id,) = grid.statuses(PROJECT)
        pilot = grid.start_pilot(SITE_A, "pilot-a")

        def running_payload() -> list[psutil.Process] | None:
            running = grid.statuses(PROJECT)[job_id] == "RUNNING"
            payloads = standin_processes(tmp_path)
            return payloads if running and payloads else None

        (payload,) = grid.wait(running_payload, timeout=60, what="the payload to run")
        (job_dir,) = grid.job_dirs()[(job_id, 1)]
        killed = grid.cli("gb2_job_kill", "-j", str(job_id), "--force")
        assert killed.code == 0, killed
        assert f"Job {job_id}: killed" in killed.out

        grid.wait_statuses([job_id], {"KILLED"}, timeout=30)
        grid.wait(lambda: is_gone(payload.pid), timeout=10, what="the payload to be gone")
        # Nothing of the job is left running: wrapper, shell and payload all ended.
        assert processes_under(job_dir) == []
        # The pilot itself lives on, ready for the next job.
        assert pilot.proc.poll() is None

        history = grid.job(job_id).history
        minors = [(h.minor_status, h.source) for h in history]
        assert any(m == "Marked for termination" for m, _ in minors), minors
        assert history[-1].status == grid.job(job_id).job.status
        statuses = grid.history(job_id)
        assert statuses[-1] == "KILLED"
        assert "RUNNING" in statuses
        assert statuses.count("KILLED") == 1


def test_kill_of_a_disconnected_pilots_job_is_sent_when_it_reconnects(tmp_path: Path) -> None:
    """Central crashes while the pilot is frozen (SIGSTOP), so the pilot has no session when
    the user kills its job: the kill request is kept and sent as soon as the pilot's new
    session says the job still runs."""
    with e2e_grid(tmp_path, {"stalled_after": 8.0}) as grid:
        steering = grid.write_steering()
        submitted = grid.cli(
            "gbasf2", str(steering), "-p", PROJECT, "-s", RELEASE, "--repetition", "1",
            "--basf2opt", "-n 600 --standin-seconds 120", "--force",
        )  # fmt: skip
        assert submitted.code == 0, submitted
        (job_id,) = grid.statuses(PROJECT)
        pilot = grid.start_pilot(SITE_A, "pilot-a")

        def running_payload() -> list[psutil.Process] | None:
            running = grid.statuses(PROJECT)[job_id] == "RUNNING"
            payloads = standin_processes(tmp_path)
            return payloads if running and payloads else None

        (payload,) = grid.wait(running_payload, timeout=60, what="the payload to run")
        os.kill(pilot.pid, signal.SIGSTOP)
        try:
            grid.central.kill()
            grid.central.start()
            killed = grid.cli("gb2_job_kill", "-j", str(job_id), "--force")
            assert killed.code == 0, killed
            assert "Marked for termination" in killed.out
            # Nobody can act on it yet: the payload runs on.
            assert not is_gone(payload.pid)
        finally:
            os.kill(pilot.pid, signal.SIGCONT)

        grid.wait(
            lambda: is_gone(payload.pid) and grid.statuses(PROJECT)[job_id] == "KILLED",
            timeout=30,
            what="the kill to reach the pilot after it reconnects",
        )
        log = pilot.log_path.read_text()
        reopened = [line for line in log.splitlines() if "session.opened" in line][1:]
        assert reopened, log
        assert "running_jobs=1" in reopened[0], log
        assert "kind=KIND_KILL_JOB" in log[log.index(reopened[0]) :], log
        assert grid.history(job_id)[-1] == "KILLED"
