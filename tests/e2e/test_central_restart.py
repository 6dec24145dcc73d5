"""Central restarted while jobs run, gracefully and by a crash (SIGKILL): pilots, wrappers and
directors ride it out and reconnect, and every job ends Done exactly once, none lost."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.support.e2e_grid import OWNER, RELEASE, SITE_A, SITE_B, Grid, e2e_grid

pytestmark = pytest.mark.e2e

N_JOBS = 6
STARTED = re.compile(r" job\.started .*?job_id=(\d+) attempt=(\d+)")
OUTAGE_SECONDS = 1.0


def running_jobs(grid: Grid, project: str) -> dict[int, tuple[str, int]] | None:
    """job id -> (pilot id, attempt) of jobs running their payload, once at least two do."""
    running = {
        j.job_id: (j.pilot_id, j.attempt)
        for j in grid.jobs(project)
        if j.minor_status == "Application"
    }
    return running if len(running) >= 2 else None


def check_ran_once(grid: Grid, job_id: int) -> int:
    """One Matched -> ... -> Done path per attempt, one job directory per attempt that a
    pilot received; returns the attempt that succeeded."""
    job = grid.job(job_id).job
    history = grid.history(job_id)
    assert history.count("DONE") == 1, (job_id, history)
    assert history[-1] == "DONE", (job_id, history)
    assert history.count("MATCHED") == job.attempt, (job_id, history)
    # A new attempt only after a reschedule, and a reschedule only after a stall.
    assert history.count("RESCHEDULED") == job.attempt - 1, (job_id, history)
    if "STALLED" not in history:
        assert job.attempt == 1, (job_id, history)
    dirs = grid.job_dirs()
    for attempt in range(1, job.attempt + 1):
        assert len(dirs.get((job_id, attempt), [])) <= 1, (job_id, attempt, dirs)
    assert len(dirs[(job_id, job.attempt)]) == 1
    return job.attempt


@pytest.mark.parametrize("crash", [False, True], ids=["graceful", "sigkill"])
def test_jobs_survive_a_central_restart(tmp_path: Path, crash: bool) -> None:
    project = "e2e_restart"
    with e2e_grid(tmp_path, {"stalled_after": 6.0, "reschedule_stalled_after": 3.0}) as grid:
        steering = grid.write_steering()
        submitted = grid.cli(
            "gbasf2", str(steering), "-p", project, "-s", RELEASE, "--repetition", str(N_JOBS),
            "--basf2opt", "-n 60 --standin-seconds 3", "--force",
        )  # fmt: skip
        assert submitted.code == 0, submitted
        job_ids = sorted(grid.statuses(project))
        directors = [grid.start_director(SITE_A), grid.start_director(SITE_B)]

        before = grid.wait(
            lambda: running_jobs(grid, project), timeout=60, what="two payloads running"
        )
        if crash:
            grid.central.kill()
        else:
            assert grid.central.stop() == 0
        time.sleep(OUTAGE_SECONDS)
        grid.central.start()

        grid.wait_statuses(job_ids, {"DONE"}, timeout=90)
        attempts = {job_id: check_ran_once(grid, job_id) for job_id in job_ids}
        # The jobs caught mid-run finished on the pilot that had them, without a new attempt.
        for job_id, (pilot_id, attempt) in before.items():
            job = grid.job(job_id).job
            assert (job.pilot_id, job.attempt) == (pilot_id, attempt), (
                job_id,
                grid.history(job_id),
            )
        # ...and their pilots reconnected their session stream to the new central.
        logs = {
            pilot_id: director.pilot_log(pilot_id).read_text()
            for director in directors
            for pilot_id in director.pilot_ids()
        }
        for pilot_id, _attempt in before.values():
            assert logs[pilot_id].count("session.opened") >= 2, logs[pilot_id]
        # The pilots' own account agrees: each (job, attempt) started once across all pilots.
        started = [(int(m[1]), int(m[2])) for text in logs.values() for m in STARTED.finditer(text)]
        assert len(started) == len(set(started)), started
        assert {job_id for job_id, _ in started} == set(job_ids)
        assert set(started) == set(grid.job_dirs())
        # Every job left exactly one output, under the name of its successful attempt.
        listed = grid.cli("gb2_ds_list", project, "--json")
        assert listed.code == 0, listed
        expected = {
            f"/belle/user/{OWNER}/{project}/sub00/output_{job_id}_{attempt}.root"
            for job_id, attempt in attempts.items()
        }
        assert {f["lfn"] for f in json.loads(listed.out)} == expected
        assert "Traceback" not in grid.central.log_text()
