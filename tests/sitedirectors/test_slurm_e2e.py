"""Central + site director + a real one-node SLURM: pilots from the pilot bundle, started by
slurmd, run real payload jobs; and what happens when SLURM refuses, kills or keeps pilots.

The pilots run Debian's /usr/bin/python3 (GRIDPILOT_PYTHON), which has none of gridpilot's
dependencies: everything they import comes from the bundle.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from gridpilot.v1 import common_pb2
from sitedirectors.bundle import PilotBundle
from sitedirectors.config import config_from_dict
from sitedirectors.director import JOURNAL_FILE, CycleReport, Director
from tests.sitedirectors.helpers import (
    admin_queues,
    config_dict,
    job_history,
    job_statuses,
    job_table,
    list_pilots,
    pilot_record,
    run_until,
    sleeper_command,
    submit_payload_jobs,
    wait_until,
)
from tests.support.bundle import NODE_PYTHON, require_node_python
from tests.support.central_process import QUEUE, CentralHandle, running_central
from tests.support.processes import (
    kill_everything_under,
    kill_pids,
    processes_under,
    standin_processes,
)
from tests.support.slurm import SlurmCluster, active_jobs, cancel_all_jobs, run_slurm

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
# The pilot's interpreter in the tests about SLURM's behaviour rather than the bundle's.
OWN_PYTHON = sys.executable
# Every JWT starts with the base64url of '{"' (its JSON header).
JWT_PREFIX = "eyJ"
PS = common_pb2.PilotState
JS = common_pb2.JobStatus
FINAL_JOB_STATUSES = {JS.JOB_STATUS_DONE, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_KILLED}


@pytest.fixture
def slurm_test(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[SlurmCluster]:
    """The cluster, left as found: this test's jobs cancelled, its processes gone."""
    require_node_python()
    yield slurm_cluster
    cancel_all_jobs(slurm_cluster)
    kill_everything_under(tmp_path)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralHandle]:
    with running_central(tmp_path / "central") as handle:
        yield handle


def slurm_config(
    tmp_path: Path,
    central: CentralHandle,
    cluster: SlurmCluster,
    bundle: PilotBundle | None,
    python: str = OWN_PYTHON,
    **queue: Any,
) -> dict[str, Any]:
    """The director's configuration for one slurm queue whose pilots come from the bundle,
    run by `python`."""
    pilot = {
        "command": [],
        "environment": {"GRIDPILOT_PYTHON": python},
        "idle_timeout": 3.0,
        "extra_args": ["--min-disk-mb", "1", "--kill-grace", "3"],
        **queue.pop("pilot", {}),
    }
    options = {
        "partition": cluster.partition,
        "slurm_conf": str(cluster.conf),
        **queue.pop("backend_options", {}),
    }
    config = config_dict(
        tmp_path, central, backend="slurm", pilot=pilot, backend_options=options, **queue
    )
    if bundle is not None:
        config["director"]["pilot_bundle"] = str(bundle.path)
    return config


def wrapper_errors(work_dir: Path) -> list[str]:
    """The ERROR lines of the wrappers' logs under the pilots' directories."""
    return [
        line[:2000]
        for path in sorted(work_dir.glob("pilots/*/work/job_*/wrapper.log"))
        for line in path.read_text(errors="replace").splitlines()
        if " ERROR " in line
    ]


def make_director(config: dict[str, Any]) -> Director:
    return Director(config_from_dict(config))


def command_lines(root: Path) -> dict[int, list[str]]:
    """The command lines of the processes running under `root`, as any local user sees them."""
    found: dict[int, list[str]] = {}
    for proc in processes_under(root):
        with contextlib.suppress(psutil.Error):
            found[proc.pid] = proc.cmdline()
    return found


def pilots_done(central: CentralHandle) -> bool:
    pilots = list_pilots(central)
    return bool(pilots) and {p.state for p in pilots} == {PS.PILOT_STATE_DONE}


# ---- 1. jobs Done through SLURM pilots ---------------------------------------------------------


def test_pilots_from_the_bundle_run_jobs_to_done(
    tmp_path: Path,
    central: CentralHandle,
    slurm_test: SlurmCluster,
    pilot_bundle: PilotBundle,
) -> None:
    job_ids, software_setup = submit_payload_jobs(central, tmp_path, 3)
    config = slurm_config(
        tmp_path,
        central,
        slurm_test,
        pilot_bundle,
        python=str(NODE_PYTHON),
        pilot={"software_setup": software_setup},
    )
    director = make_director(config)
    work_dir = tmp_path / "director" / "slurm"
    seen: dict[int, list[str]] = {}

    def watching(probe: Callable[[], bool]) -> Callable[[], bool]:
        def step() -> bool:
            seen.update(command_lines(work_dir / "pilots"))
            return probe()

        return step

    try:
        run_until(
            director,
            watching(lambda: set(job_statuses(central)) <= FINAL_JOB_STATUSES),
            timeout=120,
            what="jobs to end through SLURM pilots",
        )
        assert job_statuses(central) == [JS.JOB_STATUS_DONE] * 3, (
            job_table(central),
            wrapper_errors(work_dir),
        )
        # Idle pilots end on their own, report it, and their SLURM jobs complete.
        run_until(
            director,
            watching(lambda: pilots_done(central) and not active_jobs(slurm_test)),
            timeout=60,
            what="pilots Done and their SLURM jobs ended",
        )
        # One more cycle: the director looks at the finished pilots once more.
        director.run_cycle()
    finally:
        director.close()
    pilots = list_pilots(central)
    assert len(job_ids) == 3
    assert 1 <= len(pilots) <= 3
    assert sum(p.jobs_run for p in pilots) == 3
    # Debian's python ran the pilots and wrappers from the unpacked bundle.
    pilot_commands = [c for c in seen.values() if "pilot" in c]
    assert pilot_commands, "no pilot process was seen running"
    assert all(c[0] == str(NODE_PYTHON) for c in pilot_commands), pilot_commands
    assert any("wrapper" in c for c in seen.values()), "no wrapper process was seen running"
    assert (work_dir / "bundle-cache" / pilot_bundle.sha256 / "bin" / "gridpilot-pilot").is_file()
    # No token on any command line (any user on the node can read those).
    assert not [c for c in seen.values() if any(JWT_PREFIX in arg for arg in c)]
    for p in pilots:
        assert p.backend == "slurm"
        assert p.registered_unix > 0
        shown = run_slurm(slurm_test, "scontrol", "show", "job", p.reference).stdout
        assert "JobState=COMPLETED" in shown, shown
        assert "ExitCode=0:0" in shown, shown
        pilot_log = (work_dir / "pilots" / p.pilot_id / "pilot.log").read_text()
        assert "pilot.registered" in pilot_log
        assert not (work_dir / "pilots" / p.pilot_id / "registration.token").exists()
        assert p.log_tail, f"pilot {p.pilot_id} is Done without a log tail in central"
        assert "pilot.registered" in p.log_tail
    assert [b.name for b in (work_dir / "bundles").iterdir()] == [pilot_bundle.file_name]


# ---- 2. SLURM refuses the submission ---------------------------------------------------------


def test_bad_partition_fails_the_queue_visibly(
    tmp_path: Path, central: CentralHandle, slurm_test: SlurmCluster
) -> None:
    job_ids, _ = submit_payload_jobs(central, tmp_path, 1)
    config = slurm_config(
        tmp_path,
        central,
        slurm_test,
        None,
        pilot={"command": sleeper_command()},
        backend_options={"partition": "nosuch"},
    )
    director = make_director(config)
    skip_cycles = config["director"]["failing_queue_skip_cycles"]
    try:
        first = director.run_cycle()
        [queue] = [q for q in admin_queues(central, tmp_path) if q["queue"] == QUEUE]
        paused: list[CycleReport] = [director.run_cycle() for _ in range(skip_cycles)]
        again = director.run_cycle()
    finally:
        director.close()
    assert "Invalid partition name specified" in first.failing[QUEUE]
    assert queue["backend"] == "slurm"
    assert queue["state"] == "failing"
    assert "Invalid partition name specified" in queue["error"]
    assert queue["skip_cycles_left"] == skip_cycles
    assert queue["reported_at"] > 0
    # It sits out the next cycles, submitting nothing, then tries again: still refused.
    assert all(QUEUE in r.skipped and not r.submitted for r in paused)
    assert QUEUE in again.failing
    pilots = list_pilots(central)
    assert pilots
    assert {p.state for p in pilots} == {PS.PILOT_STATE_ABORTED}
    assert all("Invalid partition name specified" in p.status_reason for p in pilots)
    assert job_statuses(central) == [JS.JOB_STATUS_WAITING] * len(job_ids)
    assert not active_jobs(slurm_test)
    assert not any((tmp_path / "director" / "slurm" / "pilots").iterdir())


# ---- 3. SLURM kills a pilot that runs a job ----------------------------------------------------


def start_one_running_job(
    tmp_path: Path,
    central: CentralHandle,
    cluster: SlurmCluster,
    bundle: PilotBundle,
    standin_seconds: float,
) -> tuple[Director, int, Any]:
    """A director whose single pilot runs the single job; (director, job id, pilot record)."""
    [job_id], software_setup = submit_payload_jobs(
        central, tmp_path, 1, basf2_options=f"-n 100 --standin-seconds {standin_seconds:g}"
    )
    config = slurm_config(
        tmp_path,
        central,
        cluster,
        bundle,
        max_total=1,
        max_waiting=1,
        pilot={"software_setup": software_setup},
    )
    director = make_director(config)
    run_until(
        director,
        lambda: job_statuses(central) == [JS.JOB_STATUS_RUNNING],
        timeout=60,
        what="the job to run",
    )
    [pilot] = list_pilots(central)
    return director, job_id, pilot


CENTRAL_QUICK_STALL = {"central": {"stalled_after": 4.0, "reschedule_stalled_after": 3.0}}


def test_scancel_terminates_the_pilot_and_its_job_is_rescheduled(
    tmp_path: Path, slurm_test: SlurmCluster, pilot_bundle: PilotBundle
) -> None:
    """scancel sends SIGTERM first (also with --signal=KILL: 22.05 turns that into a normal
    cancel), so the pilot kills its job and reports it as terminated: central reschedules it
    at once, without a stall, and a new pilot runs it to Done."""
    with running_central(tmp_path / "central", CENTRAL_QUICK_STALL) as central:
        director, job_id, pilot = start_one_running_job(
            tmp_path, central, slurm_test, pilot_bundle, standin_seconds=8
        )
        try:
            done = run_slurm(slurm_test, "scancel", pilot.reference)
            assert done.returncode == 0, done.stderr
            run_until(
                director,
                lambda: job_statuses(central) == [JS.JOB_STATUS_DONE],
                timeout=90,
                what="the job to be rescheduled and Done",
            )
        finally:
            director.close()
        history = job_history(central, job_id)
        killed = pilot_record(central, pilot.pilot_id)
    assert JS.JOB_STATUS_RESCHEDULED in history
    assert JS.JOB_STATUS_STALLED not in history
    # The pilot ended itself (its own report reaches central before SLURM's verdict).
    assert killed.state in (PS.PILOT_STATE_DONE, PS.PILOT_STATE_ABORTED)
    assert "SIGTERM" in killed.status_reason
    assert "CANCELLED AT" in killed.log_tail
    shown = run_slurm(slurm_test, "scontrol", "show", "job", pilot.reference).stdout
    assert "JobState=CANCELLED" in shown


def test_pilot_killed_outright_stalls_its_job(
    tmp_path: Path, slurm_test: SlurmCluster, pilot_bundle: PilotBundle
) -> None:
    """SIGKILL to the job's processes (the OOM killer, a node crash): nobody reports, the job
    goes Stalled, then Rescheduled; SLURM and the pilot record say the pilot was killed."""
    with running_central(tmp_path / "central", CENTRAL_QUICK_STALL) as central:
        director, job_id, pilot = start_one_running_job(
            tmp_path, central, slurm_test, pilot_bundle, standin_seconds=60
        )
        try:
            pilot_dir = tmp_path / "director" / "slurm" / "pilots" / pilot.pilot_id
            wait_until(
                lambda: standin_processes(pilot_dir), timeout=30, what="the payload to start"
            )
            processes = processes_under(pilot_dir)
            assert len(processes) >= 3  # pilot, wrapper, payload
            kill_pids(p.pid for p in processes)
            run_until(
                director,
                lambda: JS.JOB_STATUS_RESCHEDULED in job_history(central, job_id),
                timeout=60,
                what="the job to be rescheduled",
            )
            run_until(
                director,
                lambda: pilot_record(central, pilot.pilot_id).state == PS.PILOT_STATE_FAILED,
                timeout=30,
                what="the pilot record to end",
            )
            record = pilot_record(central, pilot.pilot_id)
        finally:
            director.close()
        history = job_history(central, job_id)
    stalled = history.index(JS.JOB_STATUS_STALLED)
    assert history[stalled : stalled + 2] == [JS.JOB_STATUS_STALLED, JS.JOB_STATUS_RESCHEDULED]
    assert record.status_reason == "pilot killed by signal 9"
    assert "job.started" in record.log_tail
    shown = run_slurm(slurm_test, "scontrol", "show", "job", pilot.reference).stdout
    assert "JobState=FAILED" in shown
    assert "ExitCode=0:9" in shown


# ---- 4. the director restarts mid-run --------------------------------------------------------


def test_restarted_director_picks_up_its_pilots(
    tmp_path: Path, central: CentralHandle, slurm_test: SlurmCluster, pilot_bundle: PilotBundle
) -> None:
    job_ids, software_setup = submit_payload_jobs(
        central, tmp_path, 3, basf2_options="-n 100 --standin-seconds 4"
    )
    config = slurm_config(
        tmp_path, central, slurm_test, pilot_bundle, pilot={"software_setup": software_setup}
    )
    journal = tmp_path / "director" / JOURNAL_FILE
    first = make_director(config)
    try:
        run_until(
            first,
            lambda: JS.JOB_STATUS_RUNNING in job_statuses(central),
            timeout=60,
            what="a job to run",
        )
    finally:
        first.close()
    before = {p.pilot_id: p.reference for p in list_pilots(central)}
    assert 1 <= len(before) <= 3
    # A new director over the same configuration and journal: the same pilots, no more.
    second = make_director(config)
    try:
        for _ in range(3):
            second.run_cycle()
    finally:
        second.close()
    assert {p.pilot_id: p.reference for p in list_pilots(central)} == before
    # And once more without its journal: it rebuilds it from central.
    journal.unlink()
    third = make_director(config)
    try:
        run_until(
            third,
            lambda: job_statuses(central) == [JS.JOB_STATUS_DONE] * 3,
            timeout=90,
            what="jobs Done",
        )
        run_until(
            third,
            lambda: pilots_done(central),
            timeout=60,
            what="pilots Done",
        )
    finally:
        third.close()
    after = {p.pilot_id: p.reference for p in list_pilots(central)}
    assert after == before, "a restarted director submitted pilots again"
    assert len(set(after.values())) == len(after)
    rebuilt = json.loads(journal.read_text())
    assert {e["pilot_id"] for e in rebuilt["pilots"]} >= set(before)
    assert len(job_ids) == 3


# ---- 5. no flood -----------------------------------------------------------------------------


def test_pilots_that_do_not_register_cause_no_flood(
    tmp_path: Path, central: CentralHandle, slurm_test: SlurmCluster
) -> None:
    """3 waiting jobs, max_per_cycle 50: pilots that start but never register keep counting
    as waiting, so there are never more than 3, in central as in SLURM."""
    submit_payload_jobs(central, tmp_path, 3)
    config = slurm_config(
        tmp_path,
        central,
        slurm_test,
        None,
        max_per_cycle=50,
        pilot={"command": sleeper_command(120)},
    )
    director = make_director(config)
    try:
        counts = []
        for _ in range(8):
            report = director.run_cycle()
            assert report.ok, report
            counts.append((len(list_pilots(central)), len(active_jobs(slurm_test))))
            time.sleep(0.5)
    finally:
        director.close()
    assert counts[0] == (3, 3)
    assert set(counts) == {(3, 3)}, counts
    states = {p.state for p in list_pilots(central)}
    assert states == {PS.PILOT_STATE_WAITING}
