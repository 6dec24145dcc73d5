"""Starting a daemon as another account and stopping a child process, the one way every part
of gridpilot does it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any


def as_user(argv: Sequence[str], user: str) -> list[str]:
    """`argv` to run as `user` with its own group and no supplementary groups, switched by
    setpriv(1) in the child.

    Not Popen's user=/group=: with them CPython starts the child with fork() instead of
    vfork(), and fork() runs the atfork handlers of every library loaded in this process.
    XRootD's client library (wrapper/se/xrootd.py) stops its worker threads there and waits
    for them, forever when one is stuck on a server that went away."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--", *argv]


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
