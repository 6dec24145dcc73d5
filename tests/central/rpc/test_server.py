"""The real process: `python -m central serve`, its exit codes, health, reflection, restart."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gridpilot.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, pilots_pb2, pilots_pb2_grpc
from tests.central.rpc.pilot_helpers import resources
from tests.support.central_process import CE, QUEUE, REPO_ROOT, SITE, running_central


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central", "serve", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_config_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    missing = _serve("--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0
    assert "configuration file not found" in missing.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text('[central]\nheartbeat_period = -1\n[[storage_elements]]\nname = "X"\n')
    invalid = _serve("--config", str(bad))
    assert invalid.returncode == 2
    assert "invalid configuration" in invalid.stderr
    assert invalid.stderr.strip().count("\n") == 0

    good = tmp_path / "good.toml"
    good.write_text("")
    wrong_listen = _serve("--config", str(good), "--listen", "nonsense")
    assert wrong_listen.returncode == 2
    assert "HOST:PORT" in wrong_listen.stderr

    # Serving needs TLS unless --insecure is explicit; the message names the missing key.
    no_tls = _serve("--config", str(good))
    assert no_tls.returncode == 2
    assert "security.tls_cert is required" in no_tls.stderr
    assert no_tls.stderr.strip().count("\n") == 0


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "c.toml"
        config.write_text(f'[central]\ndata_dir = "{tmp_path / "data"}"\n')
        result = _serve("--config", str(config), "--listen", f"127.0.0.1:{port}", "--insecure")
    assert result.returncode == 1
    assert "cannot" in result.stderr


def test_health_reflection_sigterm_and_restart(tmp_path: Path) -> None:
    with running_central(tmp_path) as central:
        assert central.port_file.read_text().strip() == central.target
        alice = central.user_token("alice")
        # Health and reflection answer without a token (probes); the rest needs one.
        with central.sync_channel(None) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "gridpilot.v1.JobService", "gridpilot.v1.PilotService"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = list(
                refl.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
                )
            )
            names = {s.name for s in answers[0].list_services_response.service}
            assert {
                "gridpilot.v1.JobService",
                "gridpilot.v1.PilotService",
                "gridpilot.v1.SiteDirectorService",
                "gridpilot.v1.DataService",
                "gridpilot.v1.SandboxService",
                "gridpilot.v1.AuthService",
                "gridpilot.v1.AdminService",
                "grpc.health.v1.Health",
            } <= names
        with central.sync_channel(alice) as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            spec = common_pb2.JobSpec(project="p", release="r1")
            submitted = jobs.SubmitJobs(jobs_pb2.SubmitJobsRequest(jobs=[spec, spec]), timeout=5)
            assert list(submitted.job_ids) == [1, 2]

        pid = central.pid
        assert central.stop() == 0  # SIGTERM: graceful, exit code 0
        assert "central.stopped" in central.log_text()
        central.start()
        assert central.pid != pid
        # Tokens minted before the restart are still valid: the keys are in the data dir.
        pilot = central.mint("pilot", "p1", pilot_id="p1", site=SITE, ce=CE, queue=QUEUE)
        with central.sync_channel(pilot) as channel:
            # The waiting jobs were rebuilt into the matcher from the store.
            pilots = pilots_pb2_grpc.PilotServiceStub(channel)
            got = [
                pilots.RequestJob(
                    pilots_pb2.RequestJobRequest(pilot_id="p1", resources=resources()), timeout=5
                ).job.job_id
                for _ in range(3)
            ]
            assert got == [1, 2, 0]
        # A crash (SIGKILL) loses nothing that was acknowledged.
        central.restart(crash=True)
        with central.sync_channel(alice) as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            listed = jobs.ListJobs(jobs_pb2.ListJobsRequest(), timeout=5)
            assert [j.status for j in listed.jobs] == [common_pb2.JOB_STATUS_MATCHED] * 2
            with pytest.raises(grpc.RpcError) as err:
                jobs.GetJob(jobs_pb2.GetJobRequest(job_id=5), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
