"""The final reports the pilot sends itself, when a wrapper could not send its own."""

from __future__ import annotations

from gridpilot.exit_status import describe_exit, exit_code_of
from gridpilot.v1 import common_pb2, pilots_pb2
from pilot.job import RunningJob

# Central stores the message with the job; keep it readable in `gb2_job_status`.
MAX_MESSAGE_CHARS = 4000
WRAPPER_LOG_LINES = 20


def finish_request(
    job: RunningJob, returncode: int, *, pilot_error: str | None = None
) -> pilots_pb2.FinishJobRequest:
    """The FinishJob for a wrapper that exited without `report.done`.

    Killed on a command → KILLED; killed because the pilot was told to stop (SIGTERM/SIGINT
    from the batch system) → PILOT_TERMINATED (central reschedules the job: it is not to
    blame); killed because the pilot itself failed (`pilot_error`) → WRAPPER_ERROR with that
    reason; anything else → WRAPPER_ERROR with the tail of wrapper.log.
    """
    if job.kill_reason is not None:
        category = common_pb2.EXIT_CATEGORY_KILLED
        message = f"killed by the pilot: {job.kill_reason}"
    elif job.terminated_by is not None:
        category = common_pb2.EXIT_CATEGORY_PILOT_TERMINATED
        message = f"pilot terminated ({job.terminated_by})"
    elif pilot_error is not None:
        category = common_pb2.EXIT_CATEGORY_WRAPPER_ERROR
        message = f"wrapper killed by the pilot: {pilot_error}"
    else:
        category = common_pb2.EXIT_CATEGORY_WRAPPER_ERROR
        tail = "\n".join(job.wrapper_log_tail(WRAPPER_LOG_LINES))
        message = f"wrapper {describe_exit(returncode)} without a final report"
        if tail:
            message += "; end of wrapper.log:\n" + tail
    if len(message) > MAX_MESSAGE_CHARS:
        # Keep the end: the last lines of a log say why it stopped.
        message = "..." + message[-(MAX_MESSAGE_CHARS - 3) :]
    return pilots_pb2.FinishJobRequest(
        job_id=job.job_id,
        attempt=job.attempt,
        exit_category=category,
        exit_code=exit_code_of(returncode),
        message=message,
        cpu_seconds=job.cpu_seconds,
        wall_seconds=job.wall_seconds,
    )


def pilot_terminated_request(
    matched: pilots_pb2.MatchedJob, reason: str
) -> pilots_pb2.FinishJobRequest:
    """For a job central matched to the pilot just as it was being terminated."""
    return pilots_pb2.FinishJobRequest(
        job_id=matched.job_id,
        attempt=matched.attempt,
        exit_category=common_pb2.EXIT_CATEGORY_PILOT_TERMINATED,
        message=f"pilot terminated ({reason}) before the job started",
    )
