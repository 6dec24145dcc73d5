"""gb2_job_output, gb2_ds_get of a project's outputs and `gridpilot admin`, after a job ran.

The job is run through the real pilot protocol (register, request, report, finish), driven by
hand so the test controls exactly what the job produced.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from gridpilot.channel import MutableToken
from gridpilot.checksum import adler32_of_bytes
from gridpilot.cli import gb2_ds, gb2_jobs, gbasf2
from gridpilot.cli import main as umbrella
from gridpilot.v1 import (
    common_pb2,
    pilots_pb2,
    pilots_pb2_grpc,
    sandboxes_pb2,
    sandboxes_pb2_grpc,
)
from tests.cli.conftest import USER, CliRunner, log_in
from tests.support.central_process import CE, FAILOVER_SE, LOCAL_SE, QUEUE, SITE, CentralHandle

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("alice")]

PROJECT = "outproj"
LOG_TEXT = "basf2: processed 10 events\n"


def _output_sandbox() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("job.log")
        info.size = len(LOG_TEXT)
        tar.addfile(info, io.BytesIO(LOG_TEXT.encode()))
    return raw.getvalue()


def _run_one_job(central: CentralHandle) -> tuple[int, str, bytes]:
    """Act as pilot and wrapper for one job, each with its own token (registration, then
    pilot session, then the job token); returns (job id, pilot id, output file data)."""
    resources = common_pb2.ResourceDescription(
        site=SITE, ce=CE, queue=QUEUE, cpu_time_left=86400, cores=1, memory_mb=4096
    )
    token = MutableToken(central.registration_token())
    with central.sync_channel(token) as channel:
        pilots = pilots_pb2_grpc.PilotServiceStub(channel)
        registered = pilots.RegisterPilot(
            pilots_pb2.RegisterPilotRequest(
                resources=resources, node=pilots_pb2.NodeInfo(hostname="wn01", cores=1)
            ),
            timeout=10,
        )
        pilot_id = registered.pilot_id
        token.set(registered.pilot_token)
        matched = pilots.RequestJob(
            pilots_pb2.RequestJobRequest(pilot_id=pilot_id, resources=resources), timeout=10
        ).job
        job_id, attempt = matched.job_id, matched.attempt
        # From here on the wrapper's part: everything with the job token.
        token.set(matched.job_token)
        pilots.ReportJobStatus(
            pilots_pb2.ReportJobStatusRequest(
                job_id=job_id,
                attempt=attempt,
                status=common_pb2.JOB_STATUS_RUNNING,
                minor_status="Application",
            ),
            timeout=10,
        )
        data = os.urandom(4000)
        lfn = f"/belle/user/{USER}/{PROJECT}/sub00/out_{job_id}_{attempt}.root"
        on_se = central.se_dirs[LOCAL_SE] / lfn.lstrip("/")
        on_se.parent.mkdir(parents=True, exist_ok=True)
        on_se.write_bytes(data)
        sandbox = _output_sandbox()
        header = sandboxes_pb2.SandboxHeader(
            kind=sandboxes_pb2.SandboxHeader.KIND_OUTPUT,
            job_id=job_id,
            attempt=attempt,
            size=len(sandbox),
        )
        sandbox_id = (
            sandboxes_pb2_grpc.SandboxServiceStub(channel)
            .UploadSandbox(
                iter(
                    [
                        sandboxes_pb2.UploadSandboxRequest(header=header),
                        sandboxes_pb2.UploadSandboxRequest(data=sandbox),
                    ]
                ),
                timeout=10,
            )
            .sandbox_id
        )
        pilots.FinishJob(
            pilots_pb2.FinishJobRequest(
                job_id=job_id,
                attempt=attempt,
                exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
                output_sandbox=sandbox_id,
                outputs=[
                    pilots_pb2.OutputFile(
                        lfn=lfn, se=LOCAL_SE, size=len(data), adler32=adler32_of_bytes(data)
                    )
                ],
            ),
            timeout=10,
        )
    return job_id, pilot_id, data


@pytest.fixture(scope="module")
def finished(central: CentralHandle) -> tuple[int, str, bytes]:
    """One job of PROJECT that ran and finished Done; a second one still Waiting."""
    steering = central.tmp_path / "steer.py"
    steering.write_text("print('hello')\n")
    argv = [str(steering), "-p", PROJECT, "-s", "release-08-00-00", "--force"]
    with pytest.MonkeyPatch.context() as mp:
        # Module scope runs before the per-test fixtures: log in here too.
        log_in(mp, central, central.tmp_path / "finished.token")
        assert gbasf2.main([*argv, "--central", central.target]) == 0
        done = _run_one_job(central)
        assert gbasf2.main([*argv, "--central", central.target]) == 0
    return done


def test_job_output_downloads_and_extracts(
    central: CentralHandle,
    finished: tuple[int, str, bytes],
    run_cli: CliRunner,
    tmp_path: Path,
) -> None:
    job_id, _, _ = finished
    status = run_cli(gb2_jobs.job_status_main, ["-j", str(job_id), "--json", *_c(central)])
    assert json.loads(status.out)[0]["status"] == "Done"

    result = run_cli(gb2_jobs.job_output_main, ["-p", PROJECT, "-d", str(tmp_path), *_c(central)])
    assert result.code == 0, result.out + result.err
    job_dir = tmp_path / PROJECT / str(job_id)
    assert (job_dir / "job.log").read_text() == LOG_TEXT
    assert f"Job {job_id} (Done): output sandbox in {job_dir}" in result.out
    assert "(Waiting): no output sandbox yet" in result.out
    assert "1 output sandbox(es) downloaded, 0 failed." in result.out
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.log"]


def test_ds_get_of_a_project(
    central: CentralHandle,
    finished: tuple[int, str, bytes],
    run_cli: CliRunner,
    tmp_path: Path,
) -> None:
    job_id, _, data = finished
    result = run_cli(gb2_ds.ds_get_main, [PROJECT, "-d", str(tmp_path), *_c(central)])
    assert result.code == 0, result.out
    assert (tmp_path / PROJECT / "sub00" / f"out_{job_id}_1.root").read_bytes() == data


def test_admin_pilots(
    central: CentralHandle,
    finished: tuple[int, str, bytes],
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, pilot_id, _ = finished
    user = run_cli(umbrella.main, ["admin", "pilots", "--json", *_c(central)])
    assert user.code != 0
    assert user.err.startswith("gridpilot admin pilots: error: permission denied: ")
    log_in(monkeypatch, central, tmp_path / "ops.token", "ops", "belle_admin")
    result = run_cli(umbrella.main, ["admin", "pilots", "--json", *_c(central)])
    assert result.code == 0, result.err
    pilots = json.loads(result.out)
    assert [p["pilot_id"] for p in pilots] == [pilot_id]
    assert pilots[0]["site"] == SITE
    assert pilots[0]["state"] == "Running"

    table = run_cli(umbrella.main, ["admin", "pilots", "--site", SITE, *_c(central)])
    assert pilot_id in table.out
    assert "1 pilot(s)" in table.out
    none = run_cli(umbrella.main, ["admin", "pilots", "--status", "done", *_c(central)])
    assert none.out.strip() == "0 pilot(s)"


def test_admin_storage_elements(
    central: CentralHandle, run_cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listed = run_cli(umbrella.main, ["admin", "se", "--json", *_c(central)])
    assert listed.code == 0, listed.err
    ses = {se["name"]: se for se in json.loads(listed.out)}
    assert set(ses) == {LOCAL_SE, FAILOVER_SE}
    assert ses[FAILOVER_SE]["read_allowed"] is True

    refused = run_cli(umbrella.main, ["admin", "se-status", FAILOVER_SE, "--no-read", *_c(central)])
    assert refused.code != 0
    assert refused.err.startswith("gridpilot admin se-status: error: ")
    assert "permission denied" in refused.err
    assert refused.err.count("\n") == 1

    log_in(monkeypatch, central, tmp_path / "ops.token", "ops", "belle_admin")
    changed = run_cli(umbrella.main, ["admin", "se-status", FAILOVER_SE, "--no-read", *_c(central)])
    assert changed.code == 0, changed.err
    assert changed.out.strip() == f"{FAILOVER_SE}: read banned, write allowed"
    table = run_cli(umbrella.main, ["admin", "se", *_c(central)])
    row = next(line for line in table.out.splitlines() if FAILOVER_SE in line)
    assert "│ no " in row
    assert "│ yes " in row
    restored = run_cli(umbrella.main, ["admin", "se-status", FAILOVER_SE, "--read", *_c(central)])
    assert restored.out.strip() == f"{FAILOVER_SE}: read allowed, write allowed"

    unknown = run_cli(umbrella.main, ["admin", "se-status", "NO-SE", "--read", *_c(central)])
    assert unknown.err == "gridpilot admin se-status: error: unknown storage element 'NO-SE'\n"


def _c(central: CentralHandle) -> list[str]:
    return ["--central", central.target]
