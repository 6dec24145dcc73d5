from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilot.exit_codes import PilotExitCode
from pilot.main import build_parser, settings_from_args

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _run_pilot(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pilot", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_arguments_map_onto_settings(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "--central", "c.example:50051",
            "--site", "LCG.KEK.jp",
            "--pilot-id", "abc",
            "--ce", "ce01", "--queue", "long",
            "--slots", "4", "--memory-mb", "8000", "--cpu-time", "3600",
            "--tags", "GPU,SSD", "--tags", "Fast",
            "--work-dir", str(tmp_path),
            "--idle-timeout", "5", "--max-jobs", "2",
            "--software-setup", "source /sw/{release}/setup.sh",
            "--heartbeat-period", "0.5",
        ]
    )  # fmt: skip
    settings = settings_from_args(args)
    assert settings.central == "c.example:50051"
    assert settings.pilot_id == "abc"
    assert (settings.ce, settings.queue) == ("ce01", "long")
    assert (settings.slots, settings.memory_mb, settings.cpu_time) == (4, 8000, 3600)
    assert settings.tags == ("GPU", "SSD", "Fast")
    assert settings.work_dir == tmp_path.resolve()
    assert (settings.idle_timeout, settings.max_jobs) == (5, 2)
    assert settings.software_setup == "source /sw/{release}/setup.sh"
    assert settings.heartbeat_period == 0.5
    assert settings.platform is None


def test_bad_arguments_exit_with_usage_error() -> None:
    result = _run_pilot("--central", "nohostport", "--site", "S")
    assert result.returncode == PilotExitCode.BAD_ARGUMENTS
    assert "central must be HOST:PORT" in result.stderr


def test_node_check_failure_exits_before_contacting_central(tmp_path: Path) -> None:
    result = _run_pilot(
        "--central", f"127.0.0.1:{_closed_port()}",
        "--site", "S", "--work-dir", str(tmp_path), "--min-disk-mb", str(10**12),
    )  # fmt: skip
    assert result.returncode == PilotExitCode.NODE_CHECK_FAILED, result.stderr
    assert "pilot.node_check_failed" in result.stderr


def test_unreachable_central_exits_central_unreachable(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _run_pilot(
        "--central", f"127.0.0.1:{_closed_port()}",
        "--site", "S", "--work-dir", str(tmp_path), "--min-disk-mb", "1",
        "--unreachable-timeout", "2",
    )  # fmt: skip
    assert result.returncode == PilotExitCode.CENTRAL_UNREACHABLE, result.stderr
    assert time.monotonic() - started < 30
    assert "pilot.central_unreachable" in result.stderr


@pytest.mark.parametrize("flag", ["--slots", "--max-jobs"])
def test_negative_numbers_are_refused(flag: str) -> None:
    result = _run_pilot("--central", "h:1", "--site", "S", flag, "-1")
    assert result.returncode == PilotExitCode.BAD_ARGUMENTS
