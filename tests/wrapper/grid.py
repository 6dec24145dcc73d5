"""A real central plus helpers to put data in, submit, match and run `python -m wrapper`.

Every party uses its own token, as in production: the user (alice) submits and reads her
jobs, the operator registers catalog entries, the pilot registers with a registration token
and matches with its session token, and the wrapper gets the match's job token in job.token.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from gridpilot.channel import MutableToken, write_token_file
from gridpilot.checksum import adler32_of_bytes
from gridpilot.v1 import (
    common_pb2,
    data_pb2,
    data_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    pilots_pb2,
    pilots_pb2_grpc,
    sandboxes_pb2,
    sandboxes_pb2_grpc,
)
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle
from tests.wrapper.helpers import RELEASE, subprocess_env

OWNER = "alice"
PROJECT = "wrapper-it"
WRAPPER_TIMEOUT = 90.0


class Grid:
    """A running central with helpers to put data in, submit, match and run the wrapper."""

    def __init__(self, central: CentralHandle, tmp_path: Path, software_setup: str) -> None:
        self.central = central
        self.tmp_path = tmp_path
        self.software_setup = software_setup
        self.pilot_token = MutableToken(central.registration_token())
        self._channels: list[grpc.Channel] = []
        self.reconnect()
        registered = self.pilots.RegisterPilot(
            pilots_pb2.RegisterPilotRequest(resources=self.resources()), timeout=10
        )
        self.pilot_id = registered.pilot_id
        self.pilot_token.set(registered.pilot_token)

    def reconnect(self) -> None:
        """New channels for the user, the operator and the pilot (after a central restart)."""
        self.close()
        user = self.central.sync_channel(self.central.user_token(OWNER))
        admin = self.central.sync_channel(self.central.admin_token())
        pilot = self.central.sync_channel(self.pilot_token)
        self._channels = [user, admin, pilot]
        self.jobs = jobs_pb2_grpc.JobServiceStub(user)
        self.data = data_pb2_grpc.DataServiceStub(user)
        self.sandboxes = sandboxes_pb2_grpc.SandboxServiceStub(user)
        self.admin_data = data_pb2_grpc.DataServiceStub(admin)
        self.pilots = pilots_pb2_grpc.PilotServiceStub(pilot)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels = []

    @staticmethod
    def resources() -> common_pb2.ResourceDescription:
        return common_pb2.ResourceDescription(
            site=SITE, ce=CE, queue=QUEUE, cpu_time_left=86400, cores=1, memory_mb=4096
        )

    def se_path(self, se: str, lfn: str) -> Path:
        return self.central.se_dirs[se] / lfn.lstrip("/")

    def put_file(self, lfn: str, data: bytes, copies: dict[str, bytes]) -> None:
        """Register `lfn` (size + adler32 of `data`) with a replica on each SE of `copies`,
        whose bytes are what that SE really holds."""
        for se, content in copies.items():
            path = self.se_path(se, lfn)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        self.admin_data.RegisterReplicas(
            data_pb2.RegisterReplicasRequest(
                replicas=[
                    data_pb2.ReplicaRegistration(
                        lfn=lfn, se=se, size=len(data), adler32=adler32_of_bytes(data)
                    )
                    for se in copies
                ]
            ),
            timeout=10,
        )

    def upload_input_sandbox(self, files: dict[str, bytes]) -> str:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        blob = buf.getvalue()

        def requests() -> Iterator[sandboxes_pb2.UploadSandboxRequest]:
            yield sandboxes_pb2.UploadSandboxRequest(
                header=sandboxes_pb2.SandboxHeader(
                    kind=sandboxes_pb2.SandboxHeader.KIND_INPUT, size=len(blob)
                )
            )
            yield sandboxes_pb2.UploadSandboxRequest(data=blob)

        response = self.sandboxes.UploadSandbox(requests(), timeout=10)
        return response.sandbox_id

    def submit_and_match(self, **spec_fields: Any) -> pilots_pb2.MatchedJob:
        spec = common_pb2.JobSpec(
            project=PROJECT,
            job_name="wrapper-test",
            release=RELEASE,
            steering_file="steering.py",
            input_sandbox=self.upload_input_sandbox({"steering.py": b"# steering\n"}),
            cpu_time=3600,
            priority=5,
            job_type="User",
        )
        for key, value in spec_fields.items():
            if isinstance(value, list):
                getattr(spec, key).extend(value)
            else:
                setattr(spec, key, value)
        (job_id,) = self.jobs.SubmitJobs(
            jobs_pb2.SubmitJobsRequest(jobs=[spec]), timeout=10
        ).job_ids
        response = self.pilots.RequestJob(
            pilots_pb2.RequestJobRequest(pilot_id=self.pilot_id, resources=self.resources()),
            timeout=10,
        )
        assert response.HasField("job")
        assert response.job.job_id == job_id
        return response.job

    def job_dir(self, matched: pilots_pb2.MatchedJob) -> Path:
        return self.tmp_path / "pilot" / f"job_{matched.job_id}_{matched.attempt}"

    def start_wrapper(self, matched: pilots_pb2.MatchedJob, *extra: str) -> subprocess.Popen[bytes]:
        """What the pilot does: job.pb (without the token), job.token (0600), the wrapper."""
        job_dir = self.job_dir(matched)
        job_dir.mkdir(parents=True)
        write_token_file(job_dir / "job.token", matched.job_token)
        described = pilots_pb2.MatchedJob()
        described.CopyFrom(matched)
        described.ClearField("job_token")
        (job_dir / "job.pb").write_bytes(described.SerializeToString())
        argv = [
            sys.executable,
            "-m",
            "wrapper",
            "--central",
            self.central.target,
            "--job-dir",
            str(job_dir),
            "--site",
            SITE,
            "--software-setup",
            self.software_setup,
            "--watchdog-period",
            "0.2",
            "--min-disk-free-mb",
            "1",
            "--central-retry-seconds",
            "60",
            "--ca",
            str(self.central.ca_path),
            *extra,
        ]
        with (job_dir / "wrapper.log").open("wb") as log:
            return subprocess.Popen(
                argv, cwd=job_dir, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env()
            )

    def run_wrapper(self, matched: pilots_pb2.MatchedJob, *extra: str) -> int:
        proc = self.start_wrapper(matched, *extra)
        return proc.wait(timeout=WRAPPER_TIMEOUT)

    def get_job(self, job_id: int) -> jobs_pb2.GetJobResponse:
        return self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=10)

    def output_sandbox_names(self, sandbox_id: str) -> list[str]:
        chunks = self.sandboxes.DownloadSandbox(
            sandboxes_pb2.DownloadSandboxRequest(sandbox_id=sandbox_id),
            timeout=10,
        )
        blob = b"".join(c.data for c in chunks)
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            return tar.getnames()

    def logs(self, matched: pilots_pb2.MatchedJob) -> str:
        job_dir = self.job_dir(matched)
        parts = [
            f"--- {name} ---\n{(job_dir / name).read_text(errors='replace')}"
            for name in ("wrapper.log", "payload.log")
            if (job_dir / name).exists()
        ]
        return "\n".join(parts)


def refuse_writes(root: Path) -> None:
    """An SE that refuses writes: its root directory replaced by a regular file."""
    root.rename(root.with_name(root.name + ".away"))
    root.write_text("this SE is down\n")
