"""Shared pieces of the director tests: configs, job submission, pilot clean-up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gridpilot.channel import write_token_file
from gridpilot.cli.sandbox import build_input_sandbox, upload_input_sandbox
from gridpilot.client import CentralClient
from gridpilot.client_settings import ClientSettings
from gridpilot.demo.release import create_release, setup_template
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, sitedirectors_pb2
from gridpilot.v1 import sitedirectors_pb2_grpc as sd_grpc
from sitedirectors.config import DirectorConfig, config_from_dict
from sitedirectors.director import Director
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle

REPO_ROOT = Path(__file__).resolve().parents[2]
JS = common_pb2.JobStatus
USER = "alice"
DIRECTOR = "test-director"
RELEASE = "release-08-00-00"

T = TypeVar("T")


def wait_until(probe: Callable[[], T], *, timeout: float, what: str) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return value


def run_until(
    director: Director, probe: Callable[[], object], *, timeout: float, what: str
) -> None:
    """Run director cycles until `probe` says yes; fail after `timeout` seconds, with the last
    cycle's report."""
    deadline = time.monotonic() + timeout
    while True:
        report = director.run_cycle()
        if probe():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {report}")
        time.sleep(0.3)


def sleeper_command(seconds: float = 60.0) -> list[str]:
    """A stand-in pilot that neither registers nor takes jobs: it just runs."""
    return [sys.executable, "-c", f"import time; time.sleep({seconds})"]


def exiting_command(code: int, message: str = "") -> list[str]:
    return [sys.executable, "-c", f"import sys; print({message!r}); sys.exit({code})"]


def director_token_file(
    tmp_path: Path, central: CentralHandle, sites: list[str], name: str = DIRECTOR
) -> Path:
    """The director's site_director token, as `gridpilot admin service-token --out` writes it."""
    path = tmp_path / f"{name}.token"
    write_token_file(path, central.director_token(sites, name=name))
    return path


def config_dict(tmp_path: Path, central: CentralHandle, **queue: Any) -> dict[str, Any]:
    pilot = {"idle_timeout": 5.0, "command": sleeper_command(), **queue.pop("pilot", {})}
    sites = sorted({SITE, queue.get("site", SITE)})
    return {
        "director": {
            "name": DIRECTOR,
            "central": central.target,
            "ca": str(central.ca_path),
            "token_file": str(director_token_file(tmp_path, central, sites)),
            "work_dir": str(tmp_path / "director"),
            "cycle_period": 0.5,
            "failing_queue_skip_cycles": 2,
            "rpc_timeout": 5.0,
            "log_level": "DEBUG",
        },
        "queues": [
            {
                "name": QUEUE,
                "site": SITE,
                "ce": CE,
                "max_waiting": 50,
                "max_total": 100,
                "max_per_cycle": 50,
                "ramp_up_step": 50,
                "pilot": pilot,
                "backend_options": {"kill_grace": 1.0},
                **queue,
            }
        ],
    }


def director_config(tmp_path: Path, central: CentralHandle, **queue: Any) -> DirectorConfig:
    return config_from_dict(config_dict(tmp_path, central, **queue))


def submit_jobs(central: CentralHandle, count: int, **spec: Any) -> list[int]:
    fields: dict[str, Any] = {"project": "sdtest", "release": "release-08-00-00", **spec}
    with central.sync_channel(central.user_token(USER)) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        reply = stub.SubmitJobs(
            jobs_pb2.SubmitJobsRequest(jobs=[common_pb2.JobSpec(**fields) for _ in range(count)]),
            timeout=10,
        )
    return list(reply.job_ids)


def list_pilots(central: CentralHandle) -> list[sitedirectors_pb2.PilotRecord]:
    with central.sync_channel(central.admin_token()) as channel:
        stub = sd_grpc.SiteDirectorServiceStub(channel)
        reply = stub.ListPilots(sitedirectors_pb2.ListPilotsRequest(), timeout=10)
    return list(reply.pilots)


def job_statuses(central: CentralHandle) -> list[int]:
    with central.sync_channel(central.user_token(USER)) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        reply = stub.ListJobs(jobs_pb2.ListJobsRequest(), timeout=10)
    return [job.status for job in reply.jobs]


def pilot_pids(pilots_dir: Path) -> list[int]:
    pids = []
    if pilots_dir.is_dir():
        for process_file in pilots_dir.glob("*/process.json"):
            pids.append(int(json.loads(process_file.read_text())["pid"]))
    return pids


def kill_pilots(pilots_dir: Path) -> None:
    """Never leave pilot processes behind, whatever the test did."""
    for pid in pilot_pids(pilots_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def submit_payload_jobs(
    central: CentralHandle,
    directory: Path,
    count: int,
    *,
    basf2_options: str = "-n 10",
    project: str = "sd-e2e",
) -> tuple[list[int], str]:
    """Jobs a real pilot and wrapper can run: the stand-in basf2 release under
    `directory`/releases (made unless there) and an uploaded input sandbox. Returns the job
    ids and the software-setup template for the pilots."""
    releases = directory / "releases"
    if not releases.exists():
        create_release(releases, RELEASE)
    steering = directory / "steer.py"
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
            project=project,
            release=RELEASE,
            steering_file="steer.py",
            input_sandbox=sandbox,
            basf2_options=basf2_options,
            cpu_time=600,
        )
        reply = client.call(client.jobs.SubmitJobs, jobs_pb2.SubmitJobsRequest(jobs=[spec] * count))
    return list(reply.job_ids), setup_template(releases)


def job_table(central: CentralHandle) -> str:
    """Every job's status and minor status, to say why a job did not end as expected."""
    with central.sync_channel(central.user_token(USER)) as channel:
        reply = jobs_pb2_grpc.JobServiceStub(channel).ListJobs(
            jobs_pb2.ListJobsRequest(), timeout=10
        )
    return "\n".join(
        f"job {j.job_id}: {JS.Name(j.status)} {j.minor_status!r} {j.application_status!r}"
        for j in reply.jobs
    )


def job_history(central: CentralHandle, job_id: int) -> list[int]:
    with central.sync_channel(central.user_token(USER)) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        reply = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=10)
    return [h.status for h in reply.history]


def pilot_record(central: CentralHandle, pilot_id: str) -> sitedirectors_pb2.PilotRecord:
    return next(p for p in list_pilots(central) if p.pilot_id == pilot_id)


def admin_queues(central: CentralHandle, tmp_path: Path) -> list[dict[str, Any]]:
    """`gridpilot admin queues --json` as an operator runs it (its own process)."""
    token_file = tmp_path / "admin.token"
    write_token_file(token_file, central.admin_token())
    env = {
        **os.environ,
        "GRIDPILOT_CA": str(central.ca_path),
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    argv = [sys.executable, "-m", "gridpilot", "admin", "queues", "--json",
            "--central", central.target, "--token-file", str(token_file)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    queues: list[dict[str, Any]] = json.loads(done.stdout)
    return queues
