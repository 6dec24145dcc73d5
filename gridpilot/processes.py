"""Stopping a child process the one way every part of gridpilot does it."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_child(proc: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL; the exit code. A child that has
    exited already is only reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout)
