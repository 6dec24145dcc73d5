"""A job token is good for its own job and attempt only: a real central refuses it anywhere
else (PERMISSION_DENIED) and nothing changes; the real wrapper given another job's token
cannot report that job."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gridpilot.v1 import (
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    pilots_pb2,
    pilots_pb2_grpc,
    sandboxes_pb2,
    sandboxes_pb2_grpc,
)
from tests.support.central_process import running_central
from tests.wrapper.grid import Grid

pytestmark = pytest.mark.e2e

S = common_pb2.JobStatus


@pytest.fixture
def grid(tmp_path: Path, software_setup: str) -> Iterator[Grid]:
    overrides = {"central": {"stalled_after": 300.0, "reschedule_stalled_after": 300.0}}
    with running_central(tmp_path, overrides) as central:
        g = Grid(central, tmp_path, software_setup)
        try:
            yield g
        finally:
            g.close()


def _denied(call: object) -> grpc.RpcError:
    assert isinstance(call, grpc.RpcError)
    assert isinstance(call, grpc.Call)
    assert call.code() is grpc.StatusCode.PERMISSION_DENIED, call.details()
    return call


def _sandbox(job_id: int, attempt: int) -> Iterator[sandboxes_pb2.UploadSandboxRequest]:
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("empty.log"), io.BytesIO(b""))
    data = blob.getvalue()
    header = sandboxes_pb2.SandboxHeader(
        kind=sandboxes_pb2.SandboxHeader.KIND_OUTPUT, job_id=job_id, attempt=attempt, size=len(data)
    )
    yield sandboxes_pb2.UploadSandboxRequest(header=header)
    yield sandboxes_pb2.UploadSandboxRequest(data=data)


def test_job_token_cannot_touch_another_job(grid: Grid) -> None:
    mine = grid.submit_and_match(basf2_options="-n 1")
    other = grid.submit_and_match(basf2_options="-n 1")
    before = grid.get_job(other.job_id).job
    with grid.central.sync_channel(mine.job_token) as channel:
        pilots = pilots_pb2_grpc.PilotServiceStub(channel)
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        sandboxes = sandboxes_pb2_grpc.SandboxServiceStub(channel)
        running = pilots_pb2.ReportJobStatusRequest(
            job_id=other.job_id, attempt=other.attempt, status=S.JOB_STATUS_RUNNING
        )
        finish = pilots_pb2.FinishJobRequest(
            job_id=other.job_id,
            attempt=other.attempt,
            exit_category=common_pb2.EXIT_CATEGORY_SUCCESS,
        )
        refusals = []
        for attempt in (
            lambda: pilots.ReportJobStatus(running, timeout=10),
            lambda: pilots.FinishJob(finish, timeout=10),
            lambda: jobs.GetJob(jobs_pb2.GetJobRequest(job_id=other.job_id), timeout=10),
            lambda: sandboxes.UploadSandbox(_sandbox(other.job_id, other.attempt), timeout=10),
            # Its own job, but another attempt.
            lambda: pilots.ReportJobStatus(
                pilots_pb2.ReportJobStatusRequest(
                    job_id=mine.job_id, attempt=mine.attempt + 1, status=S.JOB_STATUS_RUNNING
                ),
                timeout=10,
            ),
        ):
            with pytest.raises(grpc.RpcError) as info:
                attempt()
            refusals.append(_denied(info.value))
        assert len(refusals) == 5
        # A job token is no user either.
        with pytest.raises(grpc.RpcError) as info:
            jobs.ListJobs(jobs_pb2.ListJobsRequest(), timeout=10)
        _denied(info.value)
        # Its own job: accepted.
        pilots.ReportJobStatus(
            pilots_pb2.ReportJobStatusRequest(
                job_id=mine.job_id,
                attempt=mine.attempt,
                status=S.JOB_STATUS_RUNNING,
                minor_status="Application",
            ),
            timeout=10,
        )
        assert jobs.GetJob(jobs_pb2.GetJobRequest(job_id=mine.job_id), timeout=10).job.status == (
            S.JOB_STATUS_RUNNING
        )
    after = grid.get_job(other.job_id).job
    assert (after.status, after.minor_status, after.attempt) == (
        before.status,
        before.minor_status,
        before.attempt,
    )


def test_wrapper_with_another_jobs_token_cannot_report_it(grid: Grid) -> None:
    mine = grid.submit_and_match(basf2_options="-n 1")
    other = grid.submit_and_match(basf2_options="-n 1")
    # The other job's directory, but this job's token in job.token.
    forged = pilots_pb2.MatchedJob()
    forged.CopyFrom(other)
    forged.job_token = mine.job_token
    assert grid.run_wrapper(forged) == 3, grid.logs(forged)
    logs = grid.logs(forged)
    assert "job.report_failed" in logs
    assert "PERMISSION_DENIED" in logs
    assert not (grid.job_dir(forged) / "report.done").exists()
    job = grid.get_job(other.job_id).job
    assert job.status == S.JOB_STATUS_MATCHED
    assert not grid.get_job(other.job_id).outputs
