"""What every pipeline step sees: the matched job, the directories, options and central."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError

from gridpilot.v1 import data_pb2, pilots_pb2
from wrapper.central import CentralConnection
from wrapper.data_access import DataAccessLog
from wrapper.options import WrapperOptions

JOB_FILE = "job.pb"
PAYLOAD_LOG = "payload.log"
WRAPPER_LOG = "wrapper.log"
REPORT_DONE = "report.done"
WORK_SUBDIR = "work"


def read_matched_job(job_dir: Path) -> pilots_pb2.MatchedJob:
    """The MatchedJob the pilot wrote; ValueError when it is missing or not a MatchedJob."""
    path = job_dir / JOB_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    job = pilots_pb2.MatchedJob()
    try:
        job.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"{path} is not a serialized MatchedJob: {exc}") from exc
    if job.job_id <= 0 or job.attempt <= 0:
        raise ValueError(f"{path} holds no job id/attempt (job_id={job.job_id})")
    return job


@dataclass
class JobContext:
    options: WrapperOptions
    job: pilots_pb2.MatchedJob
    central: CentralConnection
    started: float = field(default_factory=time.monotonic)
    parent_pid: int = field(default_factory=os.getppid)
    # Names (relative to the work dir) present before the payload ran: never outputs.
    input_names: set[str] = field(default_factory=set)
    input_data_names: list[str] = field(default_factory=list)
    data_access: DataAccessLog = field(default_factory=DataAccessLog)
    _storage_elements: dict[str, data_pb2.StorageElement] | None = None

    @property
    def job_dir(self) -> Path:
        return self.options.job_dir

    @property
    def work_dir(self) -> Path:
        return self.options.job_dir / WORK_SUBDIR

    @property
    def payload_log(self) -> Path:
        return self.options.job_dir / PAYLOAD_LOG

    @property
    def wrapper_log(self) -> Path:
        return self.options.job_dir / WRAPPER_LOG

    @property
    def ids(self) -> dict[str, int]:
        return {"job_id": self.job.job_id, "attempt": self.job.attempt}

    def storage_elements(self) -> dict[str, data_pb2.StorageElement]:
        """SE name → SE (URL, read/write status), fetched from central once per job."""
        if self._storage_elements is None:
            self._storage_elements = self.central.storage_elements()
        return self._storage_elements

    def elapsed(self) -> float:
        return time.monotonic() - self.started
