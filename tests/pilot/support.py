"""Shared pieces of the pilot's integration tests: a real central, jobs, a pilot process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

from gridpilot.channel import write_token_file
from gridpilot.cli.sandbox import build_input_sandbox, upload_input_sandbox
from gridpilot.client import CentralClient
from gridpilot.client_settings import ClientSettings
from gridpilot.demo.release import create_release, setup_template
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import common_pb2, jobs_pb2, sitedirectors_pb2
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle

RELEASE = "release-08-00-00"
REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Grid:
    """A running central, a user's and an operator's client to it, a stand-in release."""

    central: CentralHandle
    client: CentralClient
    admin: CentralClient
    tmp_path: Path
    software_setup: str

    def submit(self, count: int = 1, basf2_options: str = "-n 10", job_name: str = "") -> list[int]:
        steering = self.tmp_path / "steer.py"
        steering.write_text("# a steering file\n")
        sandbox = upload_input_sandbox(self.client, build_input_sandbox(steering, []))
        spec = common_pb2.JobSpec(
            project="pilot-it",
            release=RELEASE,
            steering_file="steer.py",
            input_sandbox=sandbox,
            basf2_options=basf2_options,
            cpu_time=600,
            job_name=job_name,
        )
        request = jobs_pb2.SubmitJobsRequest(jobs=[spec] * count)
        return list(self.client.call(self.client.jobs.SubmitJobs, request).job_ids)

    def job(self, job_id: int) -> jobs_pb2.GetJobResponse:
        request = jobs_pb2.GetJobRequest(job_id=job_id)
        answer: jobs_pb2.GetJobResponse = self.client.call(self.client.jobs.GetJob, request)
        return answer

    def status(self, job_id: int) -> str:
        return common_pb2.JobStatus.Name(self.job(job_id).job.status).removeprefix("JOB_STATUS_")

    def wait_status(self, job_id: int, *statuses: str, timeout: float = 30.0) -> str:
        def probe() -> str | None:
            status = self.status(job_id)
            return status if status in statuses else None

        return wait_until(probe, timeout=timeout, what=f"job {job_id} to be {'/'.join(statuses)}")

    def kill(self, job_id: int) -> None:
        selection = jobs_pb2.JobSelection(job_ids=[job_id])
        answer = self.client.call(
            self.client.jobs.KillJobs, jobs_pb2.KillJobsRequest(selection=selection)
        )
        assert all(r.ok for r in answer.results), answer

    def pilots(self) -> list[sitedirectors_pb2.PilotRecord]:
        answer = self.admin.call(
            self.admin.site_directors.ListPilots, sitedirectors_pb2.ListPilotsRequest(site=SITE)
        )
        return list(answer.pilots)


def _client(central: CentralHandle, token: str, user: str) -> CentralClient:
    assert central.ca_path is not None
    tls = ClientTls(ca=central.ca_path)
    return CentralClient(ClientSettings(central=central.target, token=token, tls=tls, user=user))


@contextmanager
def grid_client(central: CentralHandle, tmp_path: Path) -> Iterator[Grid]:
    releases = tmp_path / "releases"
    create_release(releases, RELEASE)
    with (
        _client(central, central.user_token("alice"), "alice") as client,
        _client(central, central.admin_token(), "admin") as admin,
    ):
        yield Grid(central, client, admin, tmp_path, setup_template(releases))


def registration_token_file(
    grid: Grid, work_dir: Path, site: str = SITE, ce: str = CE, queue: str = QUEUE
) -> Path:
    """What a site director hands a pilot: a single-use registration token in a 0600 file."""
    path = work_dir.parent / f"{work_dir.name}.registration.token"
    write_token_file(path, grid.central.registration_token(site=site, ce=ce, queue=queue))
    return path


def pilot_args(
    grid: Grid, work_dir: Path, *extra: str, token_file: Path | None = None
) -> list[str]:
    token_file = token_file or registration_token_file(grid, work_dir)
    return [
        "--central", grid.central.target,
        "--site", SITE, "--ce", CE, "--queue", QUEUE,
        "--work-dir", str(work_dir),
        "--software-setup", grid.software_setup,
        "--min-disk-mb", "1",
        "--kill-grace", "3",
        "--log-level", "DEBUG",
        "--ca", str(grid.central.ca_path),
        "--token-file", str(token_file),
        *extra,
    ]  # fmt: skip


@contextmanager
def pilot_process(
    grid: Grid, work_dir: Path, *extra: str, token_file: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`python -m pilot` as a batch system would start it; stderr goes to work_dir/pilot.log."""
    work_dir.mkdir(parents=True, exist_ok=True)
    argv = pilot_args(grid, work_dir, *extra, token_file=token_file)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    with (work_dir / "pilot.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pilot", *argv],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        for leftover in wrapper_sessions(work_dir):
            kill_session(leftover)


def pilot_log(work_dir: Path) -> str:
    return (work_dir / "pilot.log").read_text(errors="replace")


def wrapper_sessions(work_dir: Path) -> list[int]:
    """Session ids of the wrappers running jobs under `work_dir` (found by their --job-dir)."""
    sessions = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "wrapper" in cmdline and any(arg.startswith(str(work_dir)) for arg in cmdline):
            try:
                sessions.append(os.getsid(proc.pid))
            except OSError:
                continue
    return sessions


def session_members(session_id: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == session_id and proc.info["status"] != "zombie":
                members.append(proc)
        except OSError:
            continue
    return members


def kill_session(session_id: int) -> None:
    for proc in session_members(session_id):
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
