from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gridpilot.exit_status import exit_code_of
from tests.wrapper.helpers import RELEASE, subprocess_env
from wrapper.steps.payload import run_payload
from wrapper.steps.software import payload_command, setup_snippet
from wrapper.watchdog import Limits

MB = 1024 * 1024


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    (path / "steering.py").write_text("# steering\n")
    (path / "in.root").write_bytes(b"z" * 4096)
    return path


def standin(software_setup: str, *options: str) -> list[str]:
    setup = setup_snippet(software_setup, RELEASE)
    return payload_command(setup, "steering.py", ["in.root"], " ".join(options))


def run(command: list[str], work: Path, limits: Limits, period: float = 0.2) -> tuple[int, str]:
    result = run_payload(
        command,
        cwd=work,
        log_path=work.parent / "payload.log",
        limits=limits,
        period=period,
        parent_pid=os.getppid(),
        env=subprocess_env(),
        kill_grace=2,
    )
    return result.exit_code, result.watchdog_reason or ""


def test_success(software_setup: str, work: Path) -> None:
    heartbeat = work.parent / "hb.json"
    result = run_payload(
        standin(software_setup, "-n", "20", "--standin-seconds", "0.6"),
        cwd=work,
        log_path=work.parent / "payload.log",
        limits=Limits(wall_seconds=60),
        period=0.1,
        parent_pid=os.getppid(),
        env=subprocess_env(),
        heartbeat_file=heartbeat,
    )
    assert result.succeeded
    assert result.description == "exit code 0"
    assert result.cpu_seconds > 0
    assert result.wall_seconds >= 0.6
    assert (work / "output.root").is_file()
    log = (work.parent / "payload.log").read_text()
    assert "[INFO] Processed event 20" in log
    assert heartbeat.is_file()


def test_application_error(software_setup: str, work: Path) -> None:
    code, reason = run(standin(software_setup, "--standin-exit-code", "3"), work, Limits())
    assert (code, reason) == (3, "")


def test_unknown_release_setup_fails(tmp_path: Path, work: Path) -> None:
    setup = setup_snippet(f"source {tmp_path}/{{release}}/setup.sh", "release-99")
    code, _ = run(payload_command(setup, "steering.py", [], ""), work, Limits())
    assert code != 0
    assert "setup.sh" in (work.parent / "payload.log").read_text()


def test_wall_clock_kill(software_setup: str, work: Path) -> None:
    started = time.monotonic()
    code, reason = run(
        standin(software_setup, "-n", "10", "--standin-seconds", "60"),
        work,
        Limits(wall_seconds=1.0),
    )
    assert reason.startswith("wall clock limit exceeded")
    assert code == exit_code_of(-15)
    assert time.monotonic() - started < 15
    assert not (work / "output.root").exists()


def test_memory_kill(software_setup: str, work: Path) -> None:
    code, reason = run(
        standin(software_setup, "--standin-rss-mb", "200", "--standin-seconds", "60"),
        work,
        Limits(rss_bytes=100 * MB),
    )
    assert reason.startswith("memory limit exceeded"), reason
    assert code != 0


def test_stalled_kill(software_setup: str, work: Path) -> None:
    _, reason = run(
        standin(software_setup, "-n", "5", "--standin-seconds", "60"),
        work,
        Limits(stalled_grace_seconds=1.5),
    )
    assert reason.startswith("payload stalled"), reason


def test_looping_kill(software_setup: str, work: Path) -> None:
    """Five events in 60 s: a log line every 12 s, nothing else written in between."""
    code, reason = run(
        standin(software_setup, "-n", "5", "--standin-seconds", "60"),
        work,
        Limits(looping_seconds=1.5),
    )
    assert reason.startswith("payload looping: no file written for"), reason
    assert code != 0


def test_a_payload_that_writes_is_not_looping(software_setup: str, work: Path) -> None:
    """A log line every 0.1 s keeps a 1 s looping limit from firing over 3 s of running."""
    code, reason = run(
        standin(software_setup, "-n", "30", "--standin-seconds", "3"),
        work,
        Limits(looping_seconds=1.0),
    )
    assert (code, reason) == (0, "")


def test_cpu_time_kill(work: Path) -> None:
    busy = ["bash", "-c", 'exec "$@"', "bash", sys.executable, "-c", "while True: pass"]
    _, reason = run(busy, work, Limits(cpu_seconds=0.5))
    assert reason.startswith("CPU time limit exceeded"), reason


PARENT = """
import os, subprocess, sys, time
from pathlib import Path
pidfile = Path(sys.argv[1])
me = str(os.getpid())
with open(sys.argv[3], "w") as out:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(pidfile), me], stdout=out)
deadline = time.monotonic() + 20
while not pidfile.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print(child.pid, flush=True)
"""

CHILD = """
import sys
from pathlib import Path
from wrapper.errors import ParentGone
from wrapper.steps.payload import run_payload
from wrapper.watchdog import Limits
pidfile, parent = Path(sys.argv[1]), int(sys.argv[2])
cmd = ["bash", "-c", f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile} && exec sleep 60"]
try:
    run_payload(cmd, cwd=pidfile.parent, log_path=pidfile.parent / "p.log",
                limits=Limits(), period=0.1, parent_pid=parent, kill_grace=2)
except ParentGone:
    print("PARENT_GONE", flush=True)
    sys.exit(5)
print("NOT_NOTICED", flush=True)
"""


def test_parent_gone_kills_payload(tmp_path: Path) -> None:
    pidfile = tmp_path / "payload.pid"
    out = tmp_path / "child.out"
    parent = subprocess.run(
        [sys.executable, "-c", PARENT, str(pidfile), CHILD, str(out)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=30,
        check=True,
    )
    wrapper_pid = int(parent.stdout)
    payload_pid = int(pidfile.read_text())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and psutil.pid_exists(wrapper_pid):
        try:
            if psutil.Process(wrapper_pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    assert "PARENT_GONE" in out.read_text()
    assert not psutil.pid_exists(payload_pid) or (
        psutil.Process(payload_pid).status() == psutil.STATUS_ZOMBIE
    )
