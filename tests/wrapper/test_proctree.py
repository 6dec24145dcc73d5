from __future__ import annotations

import subprocess
import sys
import time

import psutil

from wrapper.proctree import kill_tree

# A parent that ignores SIGTERM and a grandchild that does too: only SIGKILL ends them.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\ntime.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _child_pid(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdout is not None
    return int(proc.stdout.readline())


def test_kills_whole_tree_even_if_sigterm_ignored() -> None:
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)
    grandchild = _child_pid(proc)
    # Give both a moment to install their handlers.
    time.sleep(0.3)
    started = time.monotonic()
    status = kill_tree(proc, grace=0.5)
    assert time.monotonic() - started < 5
    assert status == -9
    assert not psutil.pid_exists(grandchild) or (
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    )


def test_polite_process_ends_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)
    assert kill_tree(proc, grace=5) == -15


def test_already_exited_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert kill_tree(proc, grace=1) == 0
