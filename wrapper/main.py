"""`python -m wrapper`: run one matched job attempt and report it to central.

The process exit status says whether central got the final report (0) or why not; the job's
own outcome travels in the report, never in this status.
"""

from __future__ import annotations

import os
import signal
import sys
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import TextIO

from gridpilot.channel import ClientSecurity, StaticToken, TokenFileError, consume_token_file
from gridpilot.logs import configure_logging, get_logger
from wrapper.central import CentralConnection, CentralError
from wrapper.context import WRAPPER_LOG, JobContext, read_matched_job
from wrapper.errors import ParentGone, Terminated
from wrapper.options import parse_options
from wrapper.pipeline import run_job
from wrapper.steps.output_sandbox import send_output_sandbox
from wrapper.steps.report import send_final_report

log = get_logger("wrapper")


class WrapperExit(IntEnum):
    REPORTED = 0
    # argparse uses 2 for a bad command line.
    REPORT_FAILED = 3
    BAD_JOB_FILE = 4
    PARENT_GONE = 5
    NO_TOKEN = 6
    # Killed by SIGTERM/SIGINT: 128 + the signal number, as a shell would report it.
    TERMINATED = 128 + signal.SIGTERM


class _Tee:
    """Log lines to stderr and to the job's wrapper.log (which goes into the output sandbox)."""

    def __init__(self, *streams: TextIO) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            if not stream.closed:
                stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            if not stream.closed:
                stream.flush()


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def _run(ctx: JobContext) -> int:
    outcome = run_job(ctx)
    sandbox_id = send_output_sandbox(ctx)
    try:
        send_final_report(ctx, outcome, sandbox_id)
    except CentralError as exc:
        log.error("job.report_failed", code=exc.code.name, error=str(exc), **ctx.ids)
        return WrapperExit.REPORT_FAILED
    return WrapperExit.REPORTED


def _same_file(stream: TextIO, path: Path) -> bool:
    try:
        a, b = os.fstat(stream.fileno()), path.stat()
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _open_log_copy(job_dir: Path) -> TextIO | None:
    """wrapper.log for the output sandbox, unless stderr already goes there (the pilot's way)."""
    path = job_dir / WRAPPER_LOG
    if _same_file(sys.stderr, path):
        return None
    try:
        return path.open("a", buffering=1)
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    job_dir: Path = options.job_dir
    log_file = _open_log_copy(job_dir)
    streams = (sys.stderr, log_file) if log_file is not None else (sys.stderr,)
    configure_logging(options.log_level, stream=_Tee(*streams))
    try:
        job = read_matched_job(job_dir)
    except ValueError as exc:
        log.error("wrapper.bad_job_file", job_dir=str(job_dir), error=str(exc))
        return WrapperExit.BAD_JOB_FILE
    try:
        # Removed once read: the payload runs in this directory, as the same user.
        token = consume_token_file(options.job_token_file)
    except TokenFileError as exc:
        log.error("wrapper.no_job_token", job_id=job.job_id, error=str(exc))
        return WrapperExit.NO_TOKEN
    security = ClientSecurity.from_options(
        ca=options.ca, insecure=options.insecure, token=StaticToken(token)
    )
    central = CentralConnection(
        options.central,
        job.job_id,
        job.attempt,
        security,
        retry_seconds=options.central_retry_seconds,
    )
    ctx = JobContext(options=options, job=job, central=central)
    log.info("wrapper.started", site=options.site, central=options.central, **ctx.ids)
    previous = {
        sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        return _run(ctx)
    except ParentGone as exc:
        log.warning("wrapper.parent_gone", error=str(exc), **ctx.ids)
        return WrapperExit.PARENT_GONE
    except Terminated as exc:
        log.warning("wrapper.terminated", signal=exc.signum, **ctx.ids)
        return 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        central.close()
        if log_file is not None:
            log_file.close()
