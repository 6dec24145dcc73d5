from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pilot.proctree import job_processes, kill_tree, sample_tree, session_index

# A tree like a payload's: the root, two sleeping children, a grandchild, and a
# double-forked daemon that its parent abandoned (reparented away, still in the session).
TREE_SCRIPT = """
sleep 300 &
sleep 300 &
bash -c 'sleep 300 & wait' &
( sleep 300 & ) &
echo ready > "$1"
wait
"""

STUBBORN_SCRIPT = """
trap '' TERM
bash -c "trap '' TERM; sleep 300" &
echo ready > "$1"
while true; do sleep 0.1; done
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start(script: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(["bash", "-c", script, "bash", str(ready)], start_new_session=True)
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "process tree did not start"
        time.sleep(0.02)
    time.sleep(0.2)  # let the last fork settle
    return proc


@pytest.fixture
def cleanup() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        for member in job_processes(None, proc.pid):
            member.kill()
        proc.kill()
        proc.wait()


def test_tree_includes_descendants_and_session_orphans(
    tmp_path: Path, cleanup: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start(TREE_SCRIPT, tmp_path)
    cleanup.append(proc)
    tree = job_processes(proc.pid, proc.pid)
    pids = {p.pid for p in tree}
    assert proc.pid in pids
    sleeps = [p for p in tree if p.name() == "sleep"]
    assert len(sleeps) == 4
    descendants = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    orphans = pids - descendants - {proc.pid}
    assert orphans, "the double-forked sleep should only be found through its session"
    assert session_index([proc.pid])[proc.pid]
    assert os.getpid() not in pids


def test_kill_tree_kills_every_process(
    tmp_path: Path, cleanup: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start(TREE_SCRIPT, tmp_path)
    cleanup.append(proc)
    pids = [p.pid for p in job_processes(proc.pid, proc.pid)]
    assert len(pids) >= 6
    started = time.monotonic()
    sigkilled = asyncio.run(kill_tree(proc.pid, proc.pid, grace=5.0))
    assert sigkilled == []  # all obeyed SIGTERM
    assert time.monotonic() - started < 5.0
    assert proc.wait(timeout=5) == -signal.SIGTERM
    assert not [pid for pid in pids if _alive(pid)]


def test_kill_tree_sigkills_what_ignores_sigterm(
    tmp_path: Path, cleanup: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start(STUBBORN_SCRIPT, tmp_path)
    cleanup.append(proc)
    pids = [p.pid for p in job_processes(proc.pid, proc.pid)]
    started = time.monotonic()
    sigkilled = asyncio.run(kill_tree(proc.pid, proc.pid, grace=0.5))
    elapsed = time.monotonic() - started
    assert proc.pid in sigkilled
    assert 0.5 <= elapsed < 4.0
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert not [pid for pid in pids if _alive(pid)]


def test_sample_counts_cpu_of_reaped_children_and_rss(tmp_path: Path) -> None:
    # The child burns ~0.6 s of CPU and is reaped by the root; then the root idles.
    script = (
        "import subprocess, sys, time\n"
        "subprocess.run([sys.executable, '-c', "
        "'import time\\nend = time.process_time() + 0.6\\n"
        "while time.process_time() < end: pass'], check=True)\n"
        "open(sys.argv[1], 'w').write('ready')\n"
        "data = bytearray(50 * 1024 * 1024)\n"
        "time.sleep(300)\n"
    )
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", script, str(ready)], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)
        sample = sample_tree(proc.pid, proc.pid)
        assert sample.cpu_seconds >= 0.55
        assert sample.rss_bytes >= 50 * 1024 * 1024
        assert sample.processes == 1
    finally:
        proc.kill()
        proc.wait()


def test_sample_of_a_vanished_tree_is_empty() -> None:
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    sample = sample_tree(None, proc.pid)
    assert sample.processes == 0
    assert sample.cpu_seconds == 0.0
