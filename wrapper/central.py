"""The wrapper's blocking connection to central, retrying while central is unreachable.

A central restart mid-job must not lose the final report: every call is retried with
exponential back-off on UNAVAILABLE / DEADLINE_EXCEEDED until a time budget runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc

from gridpilot.channel import ClientSecurity, open_sync_channel
from gridpilot.logs import get_logger
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

log = get_logger(__name__)

T = TypeVar("T")

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
RPC_TIMEOUT = 30.0
# Status reports are informative; the pipeline should not wait long for them.
STATUS_REPORT_BUDGET = 30.0
_SANDBOX_CHUNK = 1 << 20
FINAL_JOB_STATUSES = frozenset(
    {
        common_pb2.JobStatus.JOB_STATUS_DONE,
        common_pb2.JobStatus.JOB_STATUS_COMPLETED,
        common_pb2.JobStatus.JOB_STATUS_FAILED,
        common_pb2.JobStatus.JOB_STATUS_KILLED,
    }
)


class CentralError(Exception):
    """Central refused a call, or stayed unreachable for the whole retry budget."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


def backoff_delays(initial: float = 0.2, factor: float = 2.0, cap: float = 5.0) -> Iterator[float]:
    """0.2, 0.4, 0.8, ... seconds, never more than `cap`."""
    delay = initial
    while True:
        yield delay
        delay = min(cap, delay * factor)


def _code_of(exc: grpc.RpcError) -> grpc.StatusCode:
    return exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN


def _details_of(exc: grpc.RpcError) -> str:
    return (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)


@dataclass
class CentralConnection:
    """Stubs for one job attempt, every call made with the job token in `security`."""

    target: str
    job_id: int
    attempt: int
    security: ClientSecurity
    retry_seconds: float = 900.0

    def __post_init__(self) -> None:
        self._channel = open_sync_channel(self.target, self.security)
        self._pilots = pilots_pb2_grpc.PilotServiceStub(self._channel)
        self._data = data_pb2_grpc.DataServiceStub(self._channel)
        self._sandboxes = sandboxes_pb2_grpc.SandboxServiceStub(self._channel)
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        # Tries the last `call` needed, and whether central has seen this attempt Running.
        self.last_tries = 0
        self.running_reported = False

    def close(self) -> None:
        self._channel.close()

    def call(self, what: str, fn: Callable[[], T], budget: float | None = None) -> T:
        """Run `fn` (one RPC), retrying transient failures for up to `budget` seconds."""
        deadline = time.monotonic() + (self.retry_seconds if budget is None else budget)
        for tries, delay in enumerate(backoff_delays(), start=1):
            self.last_tries = tries
            try:
                return fn()
            except grpc.RpcError as exc:
                code = _code_of(exc)
                if code not in RETRYABLE_CODES:
                    raise CentralError(f"{what}: {_details_of(exc)}", code) from exc
                if time.monotonic() + delay > deadline:
                    raise CentralError(
                        f"{what}: central at {self.target} unreachable after {tries} tries: "
                        f"{_details_of(exc)}",
                        code,
                    ) from exc
                if tries == 1:
                    log.warning("central.retrying", call=what, code=code.name, job_id=self.job_id)
                time.sleep(delay)
        raise AssertionError("backoff_delays never ends")

    # -- the calls the wrapper makes --------------------------------------------------------

    def report_status(
        self,
        status: common_pb2.JobStatus.ValueType,
        minor_status: str,
        application_status: str = "",
        budget: float = STATUS_REPORT_BUDGET,
    ) -> bool:
        """Best effort: a refused or lost status report is logged, never fatal."""
        request = pilots_pb2.ReportJobStatusRequest(
            job_id=self.job_id,
            attempt=self.attempt,
            status=status,
            minor_status=minor_status,
            application_status=application_status,
        )
        try:
            self.call(
                "ReportJobStatus",
                lambda: self._pilots.ReportJobStatus(request, timeout=RPC_TIMEOUT),
                budget=budget,
            )
        except CentralError as exc:
            log.warning(
                "status.report_failed",
                job_id=self.job_id,
                minor_status=minor_status,
                code=exc.code.name,
                error=str(exc),
            )
            return False
        if status == common_pb2.JobStatus.JOB_STATUS_RUNNING:
            self.running_reported = True
        return True

    def finish_job(self, request: pilots_pb2.FinishJobRequest) -> common_pb2.JobStatus.ValueType:
        """The final report; the job status central recorded.

        A retry after a lost answer finds the job already final and is refused: then the
        job's record tells whether it was our report that landed.
        """
        try:
            response: pilots_pb2.FinishJobResponse = self.call(
                "FinishJob",
                lambda: self._pilots.FinishJob(request, timeout=RPC_TIMEOUT),
            )
        except CentralError as exc:
            retried = self.last_tries > 1
            if exc.code is grpc.StatusCode.FAILED_PRECONDITION and retried:
                status = self._final_status_of_attempt()
                if status is not None:
                    log.info("central.report_landed_earlier", job_id=self.job_id)
                    return status
            raise
        return response.status

    def _final_status_of_attempt(self) -> common_pb2.JobStatus.ValueType | None:
        try:
            response: jobs_pb2.GetJobResponse = self.call(
                "GetJob",
                lambda: self._jobs.GetJob(
                    jobs_pb2.GetJobRequest(job_id=self.job_id),
                    timeout=RPC_TIMEOUT,
                ),
            )
        except CentralError:
            return None
        job = response.job
        if job.attempt == self.attempt and job.status in FINAL_JOB_STATUSES:
            return job.status
        return None

    def storage_elements(self) -> dict[str, data_pb2.StorageElement]:
        response: data_pb2.ListStorageElementsResponse = self.call(
            "ListStorageElements",
            lambda: self._data.ListStorageElements(
                data_pb2.ListStorageElementsRequest(), timeout=RPC_TIMEOUT
            ),
        )
        return {se.name: se for se in response.storage_elements}

    def get_replicas(self, lfns: list[str], site: str) -> list[data_pb2.FileReplicas]:
        request = data_pb2.GetReplicasRequest(lfns=lfns, site=site)
        response: data_pb2.GetReplicasResponse = self.call(
            "GetReplicas",
            lambda: self._data.GetReplicas(request, timeout=RPC_TIMEOUT),
        )
        return list(response.files)

    def report_data_access(self, request: data_pb2.ReportDataAccessRequest) -> None:
        self.call(
            "ReportDataAccess",
            lambda: self._data.ReportDataAccess(request, timeout=RPC_TIMEOUT),
            budget=STATUS_REPORT_BUDGET,
        )

    def download_sandbox(self, sandbox_id: str, dest: Path) -> int:
        """Stream the sandbox into `dest` (restarting on transient failures); bytes written."""

        def attempt() -> int:
            size = 0
            responses = self._sandboxes.DownloadSandbox(
                sandboxes_pb2.DownloadSandboxRequest(sandbox_id=sandbox_id),
                timeout=RPC_TIMEOUT * 10,
            )
            with dest.open("wb") as out:
                for chunk in responses:
                    out.write(chunk.data)
                    size += len(chunk.data)
            return size

        return self.call("DownloadSandbox", attempt)

    def upload_sandbox(self, path: Path) -> str:
        """Upload `path` as this attempt's output sandbox; the sandbox id."""
        size = path.stat().st_size

        def requests() -> Iterator[sandboxes_pb2.UploadSandboxRequest]:
            yield sandboxes_pb2.UploadSandboxRequest(
                header=sandboxes_pb2.SandboxHeader(
                    kind=sandboxes_pb2.SandboxHeader.KIND_OUTPUT,
                    job_id=self.job_id,
                    attempt=self.attempt,
                    size=size,
                )
            )
            with path.open("rb") as f:
                while chunk := f.read(_SANDBOX_CHUNK):
                    yield sandboxes_pb2.UploadSandboxRequest(data=chunk)

        response: sandboxes_pb2.UploadSandboxResponse = self.call(
            "UploadSandbox",
            lambda: self._sandboxes.UploadSandbox(requests(), timeout=RPC_TIMEOUT * 10),
        )
        return response.sandbox_id
