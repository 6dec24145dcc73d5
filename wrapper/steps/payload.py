"""Step 5: run the payload under the watchdog, stdout+stderr into payload.log.

The payload stays in the wrapper's process group, so the pilot's kill of that group reaches
it even if the wrapper dies first; the watchdog kills only the payload's own tree.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from gridpilot.exit_status import describe_exit, exit_code_of
from gridpilot.logs import get_logger
from wrapper.errors import ParentGone
from wrapper.proctree import kill_tree
from wrapper.watchdog import Limits, TreeSampler, first_violation, parent_gone, write_heartbeat_file

log = get_logger(__name__)

# How often the loop looks at the payload and the parent between full watchdog checks.
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class PayloadResult:
    exit_code: int
    # Set when the watchdog killed the payload: which check and why.
    watchdog_reason: str | None
    cpu_seconds: float
    wall_seconds: float
    # "exit code 3", "killed by SIGKILL"
    description: str = ""

    @property
    def succeeded(self) -> bool:
        return self.watchdog_reason is None and self.exit_code == 0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_payload(
    command: list[str],
    *,
    cwd: Path,
    log_path: Path,
    limits: Limits,
    period: float,
    parent_pid: int,
    env: dict[str, str] | None = None,
    heartbeat_file: Path | None = None,
    kill_grace: float = 5.0,
) -> PayloadResult:
    """Run `command` to the end or until a watchdog check fails.

    Raises ParentGone (after killing the payload) when the pilot disappears; any other
    exception (SIGTERM included) also kills the payload before it propagates.
    """
    cpu_before = _children_cpu()
    started = time.monotonic()
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    log.info("payload.started", pid=proc.pid, argv=" ".join(command[4:]))
    reason: str | None = None
    try:
        try:
            sampler: TreeSampler | None = TreeSampler(
                proc.pid, cwd, watched=(log_path,), looping_seconds=limits.looping_seconds
            )
        except psutil.NoSuchProcess:
            sampler = None  # already over; nothing to watch
        next_check = time.monotonic() + period
        while True:
            try:
                proc.wait(timeout=min(period, _POLL_SECONDS))
                break
            except subprocess.TimeoutExpired:
                pass
            if parent_gone(parent_pid, os.getppid()):
                kill_tree(proc, kill_grace)
                raise ParentGone(f"parent {parent_pid} is gone; payload killed")
            if sampler is None or time.monotonic() < next_check:
                continue
            next_check += period
            sample = sampler.sample()
            if heartbeat_file is not None:
                write_heartbeat_file(heartbeat_file, sample)
            reason = first_violation(sample, limits)
            if reason is not None:
                log.warning("watchdog.kill", pid=proc.pid, reason=reason)
                kill_tree(proc, kill_grace)
                break
    except BaseException:
        if proc.poll() is None:
            kill_tree(proc, kill_grace)
        raise
    returncode = proc.returncode
    result = PayloadResult(
        exit_code=exit_code_of(returncode),
        watchdog_reason=reason,
        cpu_seconds=max(0.0, _children_cpu() - cpu_before),
        wall_seconds=time.monotonic() - started,
        description=describe_exit(returncode),
    )
    log.info(
        "payload.ended",
        pid=proc.pid,
        result=result.description,
        cpu_seconds=round(result.cpu_seconds, 2),
        wall_seconds=round(result.wall_seconds, 2),
    )
    return result
