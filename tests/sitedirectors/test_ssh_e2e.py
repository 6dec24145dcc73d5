"""The ssh backend end to end: a real central, the director, a real sshd, and pilots from the
real pilot bundle running as the test account `gpilot` under Debian's own python (which has
none of gridpilot's dependencies: the bundle must bring them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridpilot.demo.release import create_release, setup_template
from gridpilot.v1 import common_pb2, sitedirectors_pb2
from sitedirectors.bundle import PilotBundle
from sitedirectors.config import config_from_dict
from sitedirectors.director import JOURNAL_FILE, Director
from sitedirectors.journal import Journal
from sitedirectors.registry import BackendRegistry, default_registry
from tests.sitedirectors.helpers import (
    RELEASE,
    admin_queues,
    config_dict,
    job_history,
    job_statuses,
    job_table,
    list_pilots,
    pilot_record,
    run_until,
    submit_payload_jobs,
    wait_until,
)
from tests.support.bundle import NODE_PYTHON, require_node_python
from tests.support.central_process import FAILOVER_SE, LOCAL_SE, QUEUE, SITE, CentralHandle
from tests.support.central_process import running_central as central_process
from tests.support.processes import (
    kill_pids,
    processes_under,
    standin_processes,
)
from tests.support.slurm import SlurmCluster
from tests.support.sshd import SshServer, kill_user_processes

# Every test of the test account `gpilot` on one worker: their clean-up ends its processes.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("ssh")]
pytest_plugins = ["tests.sitedirectors.ssh_fixtures"]

PS = common_pb2.PilotState
JS = common_pb2.JobStatus
QUICK_JOBS = "-n 10 --standin-seconds 0.5"
PILOT_EXTRA_ARGS = ["--min-disk-mb", "1", "--kill-grace", "3"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """What the pilots (another account) must reach: the release, the SE directories.
    pytest's own temporary directories are private to root."""
    path = Path(tempfile.mkdtemp(prefix="gridpilot-ssh-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def central(tmp_path: Path, shared_dir: Path) -> Iterator[CentralHandle]:
    ses = {LOCAL_SE: shared_dir / "se-local", FAILOVER_SE: shared_dir / "se-failover"}
    for path in ses.values():
        path.mkdir(mode=0o777)
        path.chmod(0o777)  # the wrappers upload as the pilot account
    overrides = {
        "storage_elements": [
            {"name": name, "site": SITE, "url": f"file://{path}"} for name, path in ses.items()
        ]
    }
    with central_process(tmp_path / "central", overrides) as handle:
        yield handle


@pytest.fixture
def registry() -> BackendRegistry:
    return default_registry()


def node_release(shared_dir: Path) -> str:
    """The stand-in basf2 release in the shared directory, run by the node's python (the
    director's own interpreter lives where the pilot account cannot go)."""
    root = create_release(shared_dir / "releases", RELEASE)
    basf2 = root / "bin" / "basf2"
    lines = basf2.read_text().splitlines()
    lines[-1] = f'exec {NODE_PYTHON} -m gridpilot.demo.basf2_standin "$@"'
    basf2.write_text("\n".join(lines) + "\n")
    for path in (shared_dir / "releases", root, root / "bin"):
        path.chmod(0o755)
    return setup_template(shared_dir / "releases")


def director_config(
    tmp_path: Path,
    central: CentralHandle,
    bundle: PilotBundle,
    backend_options: dict[str, Any],
    software_setup: str,
    **queue: Any,
) -> dict[str, Any]:
    pilot = {
        "command": [],  # the bundle's launcher
        "software_setup": software_setup,
        "idle_timeout": 3.0,
        "extra_args": PILOT_EXTRA_ARGS,
        "environment": {"GRIDPILOT_PYTHON": str(NODE_PYTHON)},
        **queue.pop("pilot", {}),
    }
    cfg = config_dict(
        tmp_path,
        central,
        backend="ssh",
        backend_options=backend_options,
        **{"max_waiting": 3, **queue},
        pilot=pilot,
    )
    cfg["director"]["pilot_bundle"] = str(bundle.path)
    return cfg


def jobs_in(central: CentralHandle, status: int, count: int = 0) -> bool:
    """All `count` jobs (any one when count is 0) have `status`; a failed job ends the wait
    at once: these jobs must not fail."""
    statuses = job_statuses(central)
    if JS.JOB_STATUS_FAILED in statuses:
        raise AssertionError(f"a job failed:\n{job_table(central)}")
    if count:
        return statuses == [status] * count
    return status in statuses


def pilots_done_with_logs(central: CentralHandle) -> bool:
    pilots = list_pilots(central)
    return bool(pilots) and all(
        p.state == PS.PILOT_STATE_DONE and "pilot.registered" in p.log_tail for p in pilots
    )


def assert_pilots_done(pilots: list[sitedirectors_pb2.PilotRecord], jobs: int) -> None:
    assert 1 <= len(pilots) <= jobs
    assert sum(p.jobs_run for p in pilots) == jobs
    for p in pilots:
        assert p.state == PS.PILOT_STATE_DONE, p
        assert p.backend == "ssh"
        assert p.registered_unix > 0
        assert "pilot.registered" in p.log_tail


@dataclass(frozen=True)
class SshGrid:
    """Central, the pilot account behind sshd, its work directory, the bundle, the release."""

    tmp_path: Path
    central: CentralHandle
    shared_dir: Path
    server: SshServer
    remote_work_dir: Path
    bundle: PilotBundle
    registry: BackendRegistry
    software_setup: str

    def director(self, queue: dict[str, Any] | None = None, **backend_options: Any) -> Director:
        """A director whose one queue (`queue`: its settings to change) reaches the server."""
        options = self.server.backend_options(
            work_dir=str(self.remote_work_dir), kill_grace=1.0, **backend_options
        )
        cfg = director_config(
            self.tmp_path, self.central, self.bundle, options, self.software_setup, **(queue or {})
        )
        return Director(config_from_dict(cfg), registry=self.registry)

    def pilot_logs(self) -> str:
        """Every pilot's log, for failure messages."""
        return "\n".join(
            f"== {log}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted((self.remote_work_dir / "pilots").glob("*/pilot.log"))
        )


@pytest.fixture
def grid(  # noqa: PLR0917 -- fixtures are positional by nature
    tmp_path: Path,
    central: CentralHandle,
    shared_dir: Path,
    sshd_server: SshServer,
    remote_work_dir: Path,
    pilot_bundle: PilotBundle,
    registry: BackendRegistry,
) -> Iterator[SshGrid]:
    require_node_python()
    yield SshGrid(
        tmp_path,
        central,
        shared_dir,
        sshd_server,
        remote_work_dir,
        pilot_bundle,
        registry,
        node_release(shared_dir),
    )
    # Whatever the test left running as the pilot account (pilots, wrappers, payloads).
    kill_user_processes(sshd_server.user)


def test_pilots_from_the_bundle_run_jobs_to_done(grid: SshGrid) -> None:
    submit_payload_jobs(grid.central, grid.shared_dir, 3, basf2_options=QUICK_JOBS)
    director = grid.director()
    try:
        run_until(
            director,
            lambda: jobs_in(grid.central, JS.JOB_STATUS_DONE, 3),
            timeout=90,
            what="jobs Done",
        )
        run_until(
            director, lambda: pilots_done_with_logs(grid.central), timeout=60, what="pilots Done"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{job_table(grid.central)}\n{grid.pilot_logs()}") from exc
    finally:
        director.close()
    pilots = list_pilots(grid.central)
    assert_pilots_done(pilots, 3)
    for p in pilots:
        pilot_dir = grid.remote_work_dir / "pilots" / p.pilot_id
        assert (pilot_dir / "exit_code").read_text().strip() == "0"
        # The pilot read its single-use token and removed it.
        assert not (pilot_dir / "registration.token").exists()
        assert p.reference.endswith(f":{p.pilot_id}")
    # One copy of the bundle on the node, unpacked once.
    work = grid.remote_work_dir
    assert [b.name for b in (work / "bundles").iterdir()] == [grid.bundle.file_name]
    assert [c.name for c in (work / "bundle-cache").iterdir()] == [grid.bundle.sha256]


def test_restarted_director_picks_up_its_pilots(grid: SshGrid) -> None:
    submit_payload_jobs(grid.central, grid.shared_dir, 2, basf2_options="-n 10 --standin-seconds 6")
    first = grid.director()
    try:
        run_until(
            first,
            lambda: jobs_in(grid.central, JS.JOB_STATUS_RUNNING),
            timeout=90,
            what="a job running",
        )
    finally:
        first.close()  # pilots keep running
    before = {p.pilot_id: p.reference for p in list_pilots(grid.central)}
    assert before
    # The harder restart: the journal (the director's local cache) is lost too.
    journal_path = first.work_dir / JOURNAL_FILE
    journal_path.unlink()
    second = grid.director()
    try:
        run_until(
            second,
            lambda: jobs_in(grid.central, JS.JOB_STATUS_DONE, 2),
            timeout=90,
            what="jobs Done",
        )
        run_until(
            second, lambda: pilots_done_with_logs(grid.central), timeout=60, what="pilots Done"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{job_table(grid.central)}\n{grid.pilot_logs()}") from exc
    finally:
        second.close()
    pilots = list_pilots(grid.central)
    # The same pilots, none submitted twice: the restarted director tracked them to the end.
    assert {p.pilot_id: p.reference for p in pilots} == before
    assert_pilots_done(pilots, 2)
    rebuilt = Journal.load(journal_path)
    assert {e.pilot_id for e in rebuilt.entries()} == set(before)


def test_ssh_slurm_mode_runs_jobs_through_sbatch_over_ssh(
    grid: SshGrid, slurm_cluster: SlurmCluster
) -> None:
    submit_payload_jobs(grid.central, grid.shared_dir, 2, basf2_options=QUICK_JOBS)
    director = grid.director(
        mode="slurm",
        partition=slurm_cluster.partition,
        slurm_conf=str(slurm_cluster.conf),
        time_limit=10,
    )
    try:
        run_until(
            director,
            lambda: jobs_in(grid.central, JS.JOB_STATUS_DONE, 2),
            timeout=120,
            what="jobs Done",
        )
        run_until(
            director, lambda: pilots_done_with_logs(grid.central), timeout=90, what="pilots Done"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{job_table(grid.central)}\n{grid.pilot_logs()}") from exc
    finally:
        director.close()
        # No batch job of the pilot account may start after the test (the cluster is shared).
        subprocess.run(
            ["scancel", "--user", grid.server.user],
            env={**os.environ, **slurm_cluster.env},
            capture_output=True,
            check=False,
            timeout=30,
        )
    pilots = list_pilots(grid.central)
    assert 1 <= len(pilots) <= 2
    assert sum(p.jobs_run for p in pilots) == 2
    for p in pilots:
        assert p.state == PS.PILOT_STATE_DONE
        assert "pilot.registered" in p.log_tail
        # SLURM job ids ("123", or "123_0" for an array task).
        assert p.reference.replace("_", "").isdigit(), p.reference
        # Staged over SFTP and run by sbatch as the pilot account.
        start = grid.remote_work_dir / "pilots" / p.pilot_id / "start.sh"
        assert start.stat().st_uid == grid.server.home.stat().st_uid


def wrong_known_hosts(server: SshServer, path: Path) -> Path:
    """A known_hosts naming the server with another host key (as after a man in the middle)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path.with_suffix(".key"))],
        check=True,
        capture_output=True,
    )
    key_type, key = path.with_suffix(".key.pub").read_text().split()[:2]
    path.write_text(f"[{server.host}]:{server.port} {key_type} {key}\n")
    return path


def test_wrong_host_key_fails_the_queue_visibly(grid: SshGrid) -> None:
    job_ids, _ = submit_payload_jobs(grid.central, grid.shared_dir, 1, basf2_options=QUICK_JOBS)
    known_hosts = wrong_known_hosts(grid.server, grid.tmp_path / "known_hosts")
    director = grid.director(known_hosts=str(known_hosts))
    skip_cycles = director.config.director.failing_queue_skip_cycles
    try:
        first = director.run_cycle()
        [queue] = [q for q in admin_queues(grid.central, grid.tmp_path) if q["queue"] == QUEUE]
        paused = [director.run_cycle() for _ in range(skip_cycles)]
        again = director.run_cycle()
    finally:
        director.close()
    assert "does not match known_hosts" in first.failing[QUEUE]
    assert queue["backend"] == "ssh"
    assert queue["state"] == "failing"
    assert "does not match known_hosts" in queue["error"]
    assert queue["skip_cycles_left"] == skip_cycles
    # It sits out the next cycles, then tries again (and is refused again).
    assert all(QUEUE in r.skipped and not r.submitted for r in paused)
    assert QUEUE in again.failing
    pilots = list_pilots(grid.central)
    assert pilots
    assert {p.state for p in pilots} == {PS.PILOT_STATE_ABORTED}
    assert all("does not match known_hosts" in p.status_reason for p in pilots)
    assert job_statuses(grid.central) == [JS.JOB_STATUS_WAITING] * len(job_ids)
    # Nothing reached the host.
    assert not grid.remote_work_dir.exists()


def test_pilot_killed_on_the_host_stalls_its_job(grid: SshGrid) -> None:
    """SIGKILL to every process of a pilot that runs a job (the OOM killer, a reboot): nobody
    reports, so the job goes Stalled, then Rescheduled, and another pilot runs it to Done."""
    [job_id], _ = submit_payload_jobs(
        grid.central, grid.shared_dir, 1, basf2_options="-n 100 --standin-seconds 30"
    )
    director = grid.director({"max_waiting": 1, "max_total": 1})
    try:
        run_until(
            director,
            lambda: jobs_in(grid.central, JS.JOB_STATUS_RUNNING, 1),
            timeout=90,
            what="the job running",
        )
        [pilot] = list_pilots(grid.central)
        pilot_dir = grid.remote_work_dir / "pilots" / pilot.pilot_id
        wait_until(lambda: standin_processes(pilot_dir), timeout=30, what="the payload to start")
        processes = processes_under(pilot_dir)
        assert len(processes) >= 4  # launcher, pilot, wrapper, payload
        kill_pids(p.pid for p in processes)
        run_until(
            director,
            lambda: JS.JOB_STATUS_RESCHEDULED in job_history(grid.central, job_id),
            timeout=60,
            what="the job to be rescheduled",
        )
        run_until(
            director,
            lambda: pilot_record(grid.central, pilot.pilot_id).state == PS.PILOT_STATE_ABORTED,
            timeout=30,
            what="the killed pilot's record to end",
        )
        killed = pilot_record(grid.central, pilot.pilot_id)
    finally:
        director.close()
    history = job_history(grid.central, job_id)
    stalled = history.index(JS.JOB_STATUS_STALLED)
    assert history[stalled : stalled + 2] == [JS.JOB_STATUS_STALLED, JS.JOB_STATUS_RESCHEDULED]
    assert killed.status_reason == "process vanished without an exit code"
    assert "job.started" in killed.log_tail


SLEEPER = "import time; time.sleep(120)"


def _sleepers(grid: SshGrid) -> int:
    """The SLEEPER pilots running on the SSH host."""
    return sum("time.sleep" in " ".join(p.cmdline()) for p in processes_under(grid.remote_work_dir))


def test_pilots_that_do_not_register_cause_no_flood(grid: SshGrid) -> None:
    """3 waiting jobs, max_per_cycle 50: pilots that run but never register keep counting as
    waiting, so there are never more than 3, in central as on the host."""
    submit_payload_jobs(grid.central, grid.shared_dir, 3, basf2_options=QUICK_JOBS)
    sleeper = [str(NODE_PYTHON), "-c", SLEEPER]
    director = grid.director(
        {"max_waiting": 50, "max_per_cycle": 50, "pilot": {"command": sleeper}}
    )
    try:
        counts = []
        for _ in range(8):
            report = director.run_cycle()
            assert report.ok, report
            pilots = len(list_pilots(grid.central))
            # A pilot started over SSH (nohup) shows in the host's process table a moment
            # after the submission returns: look again, briefly, before counting it missing.
            deadline = time.monotonic() + 5.0
            while (running := _sleepers(grid)) < pilots and time.monotonic() < deadline:
                time.sleep(0.1)
            counts.append((pilots, running))
            time.sleep(0.5)
    finally:
        director.close()
    assert set(counts) == {(3, 3)}, counts
    assert {p.state for p in list_pilots(grid.central)} == {PS.PILOT_STATE_WAITING}
