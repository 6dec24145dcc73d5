"""Finding and ending the processes a test started, by what they point at on disk.

Every process of an end-to-end run (central, directors, pilot launchers, pilots, wrappers,
payloads) names a path under the test's own temporary directory on its command line or runs
there, so "under this root" identifies exactly the processes the test started, also those
that changed session or were reparented when their parent died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

# Module name of the stand-in basf2 (gridpilot/demo/basf2_standin.py) on its command line.
STANDIN_MODULE = "gridpilot.demo.basf2_standin"


def _lies_under(value: str, root: str) -> bool:
    return value == root or value.startswith(root + os.sep) or (root + os.sep) in value


def processes_under(root: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `root` or whose working directory is in it
    (never this process)."""
    root_text = str(root.resolve())
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        info = proc.info
        if info["pid"] == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline: list[str] = info["cmdline"] or []
        cwd: str = info["cwd"] or ""
        if _lies_under(cwd, root_text) or any(_lies_under(arg, root_text) for arg in cmdline):
            found.append(proc)
    return found


def processes_running(root: Path, marker: str) -> list[psutil.Process]:
    """The processes under `root` whose command line contains `marker`."""
    return [p for p in processes_under(root) if marker in " ".join(_cmdline(p))]


def standin_processes(root: Path) -> list[psutil.Process]:
    """Stand-in basf2 payloads running in a job directory under `root`."""
    return processes_running(root, STANDIN_MODULE)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def is_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group, as a batch system ends a job slot."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kill_everything_under(root: Path, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process started for this root until none is left; returns their pids.

    Repeated because a dying wrapper can still start a child in the same instant."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while leftovers := processes_under(root):
        pids = [p.pid for p in leftovers]
        kill_pids(pids)
        killed += pids
        if time.monotonic() > deadline:
            raise AssertionError(f"processes under {root} survive SIGKILL: {pids}")
        time.sleep(0.05)
    return sorted(set(killed))
