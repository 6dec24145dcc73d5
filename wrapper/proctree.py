"""Ending a payload's whole process tree (the payload may fork; killing only its top leaks)."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil

from gridpilot.logs import get_logger

log = get_logger(__name__)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_all(procs: list[psutil.Process], signum: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(signum)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def kill_tree(popen: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """SIGTERM the payload and all its descendants, SIGKILL what is left after `grace` seconds.

    The tree is listed before signalling so children that get re-parented when their parent
    dies are still reached. The payload itself is reaped through `popen` (so its exit status
    stays right); the descendants are waited for with psutil. Returns the payload's exit status.
    """
    descendants = _descendants(popen.pid)
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
    _signal_all(descendants, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()
        log.info("payload.killed_hard", pid=popen.pid)
    _gone, alive = psutil.wait_procs(descendants, timeout=max(0.0, deadline - time.monotonic()))
    if alive:
        _signal_all(alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=grace)
        log.info("payload.children_killed_hard", pid=popen.pid, processes=len(alive))
    return popen.returncode
