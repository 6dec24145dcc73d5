"""The ssh backend end to end: a real central, the director, a real sshd, and pilots from the
real pilot bundle running as the test account `gpilot` under Debian's own python (which has
none of gridpilot's dependencies: the bundle must bring them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridpilot.cli.sandbox import build_input_sandbox, upload_input_sandbox
from gridpilot.client import CentralClient, ClientSettings
from gridpilot.demo.release import create_release, setup_template
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, sitedirectors_pb2
from sitedirectors.bundle import PilotBundle
from sitedirectors.config import config_from_dict
from sitedirectors.director import JOURNAL_FILE, Director
from sitedirectors.journal import Journal
from sitedirectors.registry import BackendRegistry, default_registry
from tests.sitedirectors.helpers import RELEASE, USER, config_dict, job_statuses, list_pilots
from tests.support.bundle import NODE_PYTHON, require_node_python
from tests.support.central_process import FAILOVER_SE, LOCAL_SE, SITE, CentralHandle
from tests.support.central_process import running_central as central_process
from tests.support.slurm import SlurmCluster
from tests.support.sshd import SshServer, kill_user_processes

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.sitedirectors.ssh_fixtures"]

PS = common_pb2.PilotState
JS = common_pb2.JobStatus
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


def submit_jobs(central: CentralHandle, shared_dir: Path, count: int, seconds: float) -> list[int]:
    steering = shared_dir / "steer.py"
    steering.write_text("# a steering file\n")
    assert central.ca_path is not None
    settings = ClientSettings(
        central=central.target,
        token=central.user_token(USER),
        tls=ClientTls(ca=central.ca_path),
        user=USER,
    )
    with CentralClient(settings) as client:
        sandbox = upload_input_sandbox(client, build_input_sandbox(steering, []))
        spec = common_pb2.JobSpec(
            project="ssh-e2e",
            release=RELEASE,
            steering_file="steer.py",
            input_sandbox=sandbox,
            basf2_options=f"-n 10 --standin-seconds {seconds:g}",
            cpu_time=600,
        )
        reply = client.call(client.jobs.SubmitJobs, jobs_pb2.SubmitJobsRequest(jobs=[spec] * count))
    return list(reply.job_ids)


def director_config(
    tmp_path: Path,
    central: CentralHandle,
    bundle: PilotBundle,
    backend_options: dict[str, Any],
    software_setup: str,
) -> dict[str, Any]:
    cfg = config_dict(
        tmp_path,
        central,
        backend="ssh",
        backend_options=backend_options,
        max_waiting=3,
        pilot={
            "command": [],  # the bundle's launcher
            "software_setup": software_setup,
            "idle_timeout": 3.0,
            "extra_args": PILOT_EXTRA_ARGS,
            "environment": {"GRIDPILOT_PYTHON": str(NODE_PYTHON)},
        },
    )
    cfg["director"]["pilot_bundle"] = str(bundle.path)
    return cfg


def run_until(director: Director, probe: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        report = director.run_cycle()
        if probe():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {report}")
        time.sleep(0.3)


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


def job_table(central: CentralHandle) -> str:
    with central.sync_channel(central.user_token(USER)) as channel:
        reply = jobs_pb2_grpc.JobServiceStub(channel).ListJobs(
            jobs_pb2.ListJobsRequest(), timeout=10
        )
    return "\n".join(
        f"job {j.job_id}: {JS.Name(j.status)} {j.minor_status!r} {j.application_status!r}"
        for j in reply.jobs
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

    def director(self, **backend_options: Any) -> Director:
        options = self.server.backend_options(
            work_dir=str(self.remote_work_dir), kill_grace=1.0, **backend_options
        )
        cfg = director_config(
            self.tmp_path, self.central, self.bundle, options, self.software_setup
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
    submit_jobs(grid.central, grid.shared_dir, 3, seconds=0.5)
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
    submit_jobs(grid.central, grid.shared_dir, 2, seconds=6)
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
    submit_jobs(grid.central, grid.shared_dir, 2, seconds=0.5)
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
