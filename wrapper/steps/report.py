"""Step 8: the final report (FinishJob), then `report.done` for the pilot.

`report.done` is written only after central accepted the report: the pilot reports a wrapper
error itself for a wrapper that exits without it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from gridpilot.logs import get_logger
from gridpilot.v1 import common_pb2, pilots_pb2
from wrapper.central import CentralError
from wrapper.context import REPORT_DONE, JobContext

log = get_logger(__name__)


@dataclass
class Outcome:
    """How the attempt ended, as the final report says it."""

    category: common_pb2.ExitCategory.ValueType
    message: str
    exit_code: int = 0
    outputs: list[pilots_pb2.OutputFile] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def category_name(self) -> str:
        return common_pb2.ExitCategory.Name(self.category)


def finish_request(
    job_id: int, attempt: int, outcome: Outcome, output_sandbox: str
) -> pilots_pb2.FinishJobRequest:
    return pilots_pb2.FinishJobRequest(
        job_id=job_id,
        attempt=attempt,
        exit_category=outcome.category,
        exit_code=outcome.exit_code,
        message=outcome.message,
        output_sandbox=output_sandbox,
        outputs=outcome.outputs,
        cpu_seconds=outcome.cpu_seconds,
        wall_seconds=outcome.wall_seconds,
    )


def write_report_done(job_dir: Path, status: str) -> Path:
    """Mark the report as accepted (atomically: the pilot may look at any moment)."""
    path = job_dir / REPORT_DONE
    tmp = job_dir / (REPORT_DONE + ".tmp")
    tmp.write_text(f"{status} {time.time():.3f}\n")
    os.replace(tmp, path)
    return path


def _report_data_access(ctx: JobContext) -> None:
    """Transfer times and suspect copies, before the final report; losing them costs only
    what central would have learned, so a failure here never fails the job."""
    request = ctx.data_access.request(ctx.job.job_id)
    if request is None:
        return
    try:
        ctx.central.report_data_access(request)
    except CentralError as exc:
        log.warning("job.data_access_not_reported", error=str(exc), **ctx.ids)


def send_final_report(ctx: JobContext, outcome: Outcome, output_sandbox: str) -> str:
    """FinishJob (retried while central is unreachable); the job status central answered.

    Raises CentralError when central refused the report or stayed unreachable.
    """
    if not ctx.central.running_reported:
        # Central accepts a final report only from a running job: say so first, patiently.
        ctx.central.report_status(
            common_pb2.JobStatus.JOB_STATUS_RUNNING,
            "Reporting",
            budget=ctx.options.central_retry_seconds,
        )
    _report_data_access(ctx)
    request = finish_request(ctx.job.job_id, ctx.job.attempt, outcome, output_sandbox)
    status = ctx.central.finish_job(request)
    status_name = common_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_").capitalize()
    write_report_done(ctx.job_dir, status_name)
    log.info(
        "job.reported",
        category=outcome.category_name,
        status=status_name,
        exit_code=outcome.exit_code,
        outputs=len(outcome.outputs),
        **ctx.ids,
    )
    return status_name
