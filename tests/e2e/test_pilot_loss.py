"""Pilots that die with their job (SIGKILL to the whole process group, as a batch system ends a
slot): the job goes Stalled, is rescheduled under a new attempt and new output names, and after
too many reschedulings it fails for good."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil
import pytest

from tests.support.e2e_grid import OWNER, RELEASE, SITE_A, Grid, e2e_grid, status_name
from tests.support.processes import is_gone, processes_under, standin_processes

pytestmark = pytest.mark.e2e


def submit_one(grid: Grid, project: str, basf2_options: str) -> int:
    steering = grid.write_steering()
    submitted = grid.cli(
        "gbasf2", str(steering), "-p", project, "-s", RELEASE, "--repetition", "1",
        "--basf2opt", basf2_options, "--force",
    )  # fmt: skip
    assert submitted.code == 0, submitted
    (job_id,) = grid.statuses(project)
    return job_id


def wait_running_attempt(grid: Grid, job_id: int, attempt: int) -> tuple[str, psutil.Process]:
    """Wait until `attempt` of the job runs its payload; (pilot id, payload process)."""

    def probe() -> tuple[str, psutil.Process] | None:
        job = grid.job(job_id).job
        # Not the minor status: a heartbeat that revives a (falsely) stalled job replaces it.
        if job.attempt != attempt or status_name(job.status) not in ("RUNNING", "STALLED"):
            return None
        job_dirs = grid.job_dirs().get((job_id, attempt), [])
        payloads = [p for d in job_dirs for p in standin_processes(d)]
        return (job.pilot_id, payloads[0]) if len(payloads) == 1 else None

    return grid.wait(probe, timeout=60, what=f"job {job_id} attempt {attempt} to run")


def test_job_of_a_killed_pilot_is_rescheduled_and_done_elsewhere(tmp_path: Path) -> None:
    project = "e2e_pilot_loss"
    central = {"stalled_after": 4.0, "reschedule_stalled_after": 3.0}
    with e2e_grid(tmp_path, central) as grid:
        job_id = submit_one(grid, project, "-n 100 --standin-seconds 3")
        # One pilot at a time: the director replaces the dead one when the job waits again.
        director = grid.start_director(SITE_A, max_total=1, idle_timeout=5.0)
        first_pilot, payload = wait_running_attempt(grid, job_id, 1)
        director.kill_pilot(first_pilot)
        # The orphaned wrapper notices its pilot is gone and ends the payload itself.
        grid.wait(lambda: is_gone(payload.pid), timeout=15, what="the orphaned payload to end")

        grid.wait(lambda: "STALLED" in grid.history(job_id), timeout=20, what="a stall")
        grid.wait_statuses([job_id], {"DONE"}, timeout=60)
        answer = grid.job(job_id)
        assert answer.job.attempt == 2
        assert answer.job.pilot_id != first_pilot
        history = grid.history(job_id)
        first_stall = history.index("STALLED")
        assert history[first_stall : first_stall + 3] == ["STALLED", "RESCHEDULED", "WAITING"]
        assert history.count("MATCHED") == 2
        assert history.count("DONE") == 1

        base = f"/belle/user/{OWNER}/{project}/sub00/output_{job_id}"
        (output,) = answer.outputs
        assert output.lfn == f"{base}_2.root"
        assert grid.replicas([f"{base}_1.root", f"{base}_2.root"]) == {
            f"{base}_2.root": [SITE_A.se]
        }
        assert grid.se_path(SITE_A.se, output.lfn).is_file()
        assert not grid.se_path(SITE_A.se, f"{base}_1.root").exists()
        # Each attempt ran once, on its own pilot.
        dirs = grid.job_dirs()
        assert sorted(dirs) == [(job_id, 1), (job_id, 2)]
        assert first_pilot in str(dirs[(job_id, 1)][0])
        assert answer.job.pilot_id in str(dirs[(job_id, 2)][0])


def test_job_whose_pilots_keep_dying_fails_after_max_reschedulings(tmp_path: Path) -> None:
    project = "e2e_max_resched"
    central = {
        "heartbeat_period": 0.5,
        "stalled_after": 2.5,
        "reschedule_stalled_after": 1.0,
        "max_rescheduling": 3,
    }
    with e2e_grid(tmp_path, central) as grid:
        job_id = submit_one(grid, project, "-n 600 --standin-seconds 120")
        killed_pilots = []
        # Attempts 1-3 are rescheduled; the 4th stall exceeds max_rescheduling = 3.
        for attempt in range(1, 5):
            grid.wait_statuses([job_id], {"WAITING"}, timeout=30)
            pilot = grid.start_pilot(SITE_A, f"pilot-{attempt}")
            pilot_id, payload = wait_running_attempt(grid, job_id, attempt)
            pilot.kill_group()
            killed_pilots.append(pilot_id)
            grid.wait(
                lambda: is_gone(payload.pid),  # noqa: B023 (waited for before the next turn)
                timeout=15,
                what="the orphaned payload to end",
            )
            if attempt < 4:
                grid.wait(
                    lambda: grid.job(job_id).job.attempt == attempt + 1,  # noqa: B023
                    timeout=30,
                    what=f"attempt {attempt + 1}",
                )

        grid.wait_statuses([job_id], {"FAILED"}, timeout=30)
        job = grid.job(job_id).job
        assert job.minor_status == "Maximum of reschedulings reached"
        assert (job.attempt, job.reschedule_count) == (4, 3)
        assert len(set(killed_pilots)) == 4
        history = grid.history(job_id)
        assert history.count("RESCHEDULED") == 3
        assert history.count("STALLED") >= 4
        assert history[-2:] == ["STALLED", "FAILED"], history
        assert sorted(grid.job_dirs()) == [(job_id, a) for a in range(1, 5)]
        assert grid.replicas([f"/belle/user/{OWNER}/{project}/sub00/output_{job_id}_4.root"]) == {}


def test_frozen_pilot_thawed_after_the_reschedule_cannot_touch_the_new_attempt(
    tmp_path: Path,
) -> None:
    """A node that hangs (pilot, wrapper and payload stopped) and comes back after its job ran
    elsewhere: the old pilot is told to kill its attempt, its report is refused, and the job
    keeps the new attempt's result."""
    project = "e2e_frozen"
    central = {"stalled_after": 3.0, "reschedule_stalled_after": 2.0}
    with e2e_grid(tmp_path, central) as grid:
        job_id = submit_one(grid, project, "-n 100 --standin-seconds 3")
        old = grid.start_pilot(SITE_A, "pilot-old")
        old_pilot_id, _payload = wait_running_attempt(grid, job_id, 1)
        frozen = processes_under(old.work_dir)
        assert len(frozen) >= 3  # pilot, wrapper, payload
        for proc in frozen:
            proc.suspend()
        try:
            grid.wait(lambda: grid.job(job_id).job.attempt == 2, timeout=30, what="a reschedule")
            grid.start_pilot(SITE_A, "pilot-new")
            grid.wait_statuses([job_id], {"DONE"}, timeout=60)
        finally:
            for proc in frozen:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.resume()

        grid.wait(
            lambda: "job.report_refused" in old.log_path.read_text(),
            timeout=30,
            what="the old pilot's late report to be refused",
        )
        log = old.log_path.read_text()
        assert "kind=KIND_KILL_JOB" in log, log
        assert "code=FAILED_PRECONDITION" in log, log
        assert processes_under(old.work_dir / f"job_{job_id}_1") == []
        answer = grid.job(job_id)
        assert (status_name(answer.job.status), answer.job.attempt) == ("DONE", 2)
        assert answer.job.pilot_id != old_pilot_id
        assert grid.history(job_id)[-1] == "DONE"
        base = f"/belle/user/{OWNER}/{project}/sub00/output_{job_id}"
        assert [o.lfn for o in answer.outputs] == [f"{base}_2.root"]
        assert grid.replicas([f"{base}_1.root", f"{base}_2.root"]) == {
            f"{base}_2.root": [SITE_A.se]
        }
