"""The order of the steps, and how each way of failing becomes an exit category."""

from __future__ import annotations

import os

from gridpilot.logs import get_logger
from gridpilot.v1 import common_pb2
from wrapper.context import JobContext
from wrapper.errors import AbortWithoutReport, ExitCategory, JobFailure
from wrapper.steps.input_data import stage_in
from wrapper.steps.input_sandbox import fetch_input_sandbox
from wrapper.steps.outputs import stage_out
from wrapper.steps.payload import PayloadResult, run_payload
from wrapper.steps.report import Outcome
from wrapper.steps.software import SetupError, payload_command, setup_snippet
from wrapper.steps.workdir import prepare_work_dir
from wrapper.watchdog import Limits

log = get_logger(__name__)

RUNNING = common_pb2.JobStatus.JOB_STATUS_RUNNING
COMPLETING = common_pb2.JobStatus.JOB_STATUS_COMPLETING


def _payload_env(ctx: JobContext) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GRIDPILOT_JOB_ID=str(ctx.job.job_id),
        GRIDPILOT_JOB_ATTEMPT=str(ctx.job.attempt),
        GRIDPILOT_SITE=ctx.options.site,
    )
    return env


def _run_application(ctx: JobContext, inputs: list[str]) -> PayloadResult:
    spec = ctx.job.spec
    try:
        setup = setup_snippet(ctx.options.software_setup, spec.release)
        command = payload_command(setup, spec.steering_file, inputs, spec.basf2_options)
    except SetupError as exc:
        raise JobFailure(ExitCategory.EXIT_CATEGORY_APPLICATION_ERROR, str(exc)) from exc
    limits = Limits.for_job(
        cpu_time=spec.cpu_time,
        max_ram_mb=spec.max_ram_mb,
        wall_limit=ctx.options.wall_limit,
        min_disk_free_mb=ctx.options.min_disk_free_mb,
        stalled_grace=ctx.options.stalled_grace,
        looping_limit=ctx.options.looping_limit,
    )
    ctx.central.report_status(RUNNING, "Application", f"{spec.release} {spec.steering_file}")
    return run_payload(
        command,
        cwd=ctx.work_dir,
        log_path=ctx.payload_log,
        limits=limits,
        period=ctx.options.watchdog_period,
        parent_pid=ctx.parent_pid,
        env=_payload_env(ctx),
        heartbeat_file=ctx.options.heartbeat_file,
    )


def _steps(ctx: JobContext) -> Outcome:
    ctx.central.report_status(RUNNING, "Job initialization")
    prepare_work_dir(ctx)
    ctx.central.report_status(RUNNING, "Downloading input sandbox")
    fetch_input_sandbox(ctx)
    ctx.central.report_status(RUNNING, "Downloading input data")
    inputs = stage_in(ctx)
    result = _run_application(ctx, inputs)
    cpu, wall = result.cpu_seconds, ctx.elapsed()
    if result.watchdog_reason is not None:
        ctx.central.report_status(RUNNING, "Watchdog kill", result.watchdog_reason)
        return Outcome(
            ExitCategory.EXIT_CATEGORY_WATCHDOG_KILL,
            f"watchdog: {result.watchdog_reason}",
            exit_code=result.exit_code,
            cpu_seconds=cpu,
            wall_seconds=wall,
        )
    if result.exit_code != 0:
        app_status = f"basf2 {result.description}"
        ctx.central.report_status(RUNNING, "Application Finished With Errors", app_status)
        return Outcome(
            ExitCategory.EXIT_CATEGORY_APPLICATION_ERROR,
            f"payload failed: {app_status}",
            exit_code=result.exit_code,
            cpu_seconds=cpu,
            wall_seconds=wall,
        )
    ctx.central.report_status(COMPLETING, "Uploading outputs", "Application Finished Successfully")
    try:
        outputs = stage_out(ctx)
    except JobFailure as failure:
        log.error("job.failed", category=failure.category_name, error=failure.message, **ctx.ids)
        return Outcome(
            failure.category,
            failure.message,
            outputs=failure.outputs,
            cpu_seconds=cpu,
            wall_seconds=wall,
        )
    return Outcome(
        ExitCategory.EXIT_CATEGORY_SUCCESS,
        f"done: {len(outputs)} output file(s)",
        outputs=outputs,
        cpu_seconds=cpu,
        wall_seconds=wall,
    )


def run_job(ctx: JobContext) -> Outcome:
    """Run every step; the outcome to report. AbortWithoutReport propagates (nothing to say)."""
    try:
        return _steps(ctx)
    except AbortWithoutReport:
        raise
    except JobFailure as failure:
        log.error("job.failed", category=failure.category_name, error=failure.message, **ctx.ids)
        return Outcome(
            failure.category,
            failure.message,
            exit_code=failure.exit_code,
            outputs=failure.outputs,
            wall_seconds=ctx.elapsed(),
        )
    except Exception as exc:
        # Whatever broke, central must still hear about this attempt.
        log.exception("job.wrapper_error", error=str(exc), **ctx.ids)
        return Outcome(
            ExitCategory.EXIT_CATEGORY_WRAPPER_ERROR,
            f"wrapper error: {type(exc).__name__}: {exc}",
            wall_seconds=ctx.elapsed(),
        )
