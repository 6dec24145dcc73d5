from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridpilot.channel import write_token_file
from gridpilot.security.ca import init_ca
from pilot.exit_codes import PilotExitCode
from pilot.main import build_parser, settings_from_args

ROOT = Path(__file__).resolve().parents[2]


def _credentials(tmp_path: Path) -> list[str]:
    """A registration token file and a CA, as the site director passes them."""
    token_file = tmp_path / "registration.token"
    write_token_file(token_file, "registration-token")
    ca = init_ca(tmp_path / "ca")
    return ["--token-file", str(token_file), "--ca", str(ca)]


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
            *_credentials(tmp_path),
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
    assert settings.ca == (tmp_path / "ca" / "ca.pem").resolve()
    assert settings.registration_token == "registration-token"
    # Read once, then gone: nothing on the node can register with it again.
    assert not (tmp_path / "registration.token").exists()
    assert "registration-token" not in repr(settings)


def test_missing_credentials_are_usage_errors(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    missing_ca = _run_pilot("--central", "h:1", "--site", "S", "--ca", str(tmp_path / "no.pem"))
    assert missing_ca.returncode == PilotExitCode.BAD_ARGUMENTS
    assert "does not exist" in missing_ca.stderr
    no_token = _run_pilot("--central", "h:1", "--site", "S", "--ca", str(ca))
    assert no_token.returncode == PilotExitCode.BAD_ARGUMENTS
    assert "no registration token: --token-file FILE" in no_token.stderr
    token_file = tmp_path / "t"
    write_token_file(token_file, "x")
    no_ca = _run_pilot("--central", "h:1", "--site", "S", "--token-file", str(token_file))
    assert no_ca.returncode == PilotExitCode.BAD_ARGUMENTS
    assert "--ca" in no_ca.stderr
    assert token_file.exists(), "a failing command line must not spend the token"
    token_file.chmod(0o644)
    readable = _run_pilot(
        "--central", "h:1", "--site", "S", "--token-file", str(token_file), "--insecure"
    )  # fmt: skip
    assert readable.returncode == PilotExitCode.BAD_ARGUMENTS
    assert "readable by other users" in readable.stderr


def test_bad_arguments_exit_with_usage_error(tmp_path: Path) -> None:
    result = _run_pilot("--central", "nohostport", "--site", "S", *_credentials(tmp_path))
    assert result.returncode == PilotExitCode.BAD_ARGUMENTS
    assert "central must be HOST:PORT" in result.stderr


def test_node_check_failure_exits_before_contacting_central(tmp_path: Path) -> None:
    result = _run_pilot(
        "--central", f"127.0.0.1:{_closed_port()}",
        "--site", "S", "--work-dir", str(tmp_path), "--min-disk-mb", str(10**12),
        *_credentials(tmp_path),
    )  # fmt: skip
    assert result.returncode == PilotExitCode.NODE_CHECK_FAILED, result.stderr
    assert "pilot.node_check_failed" in result.stderr


def test_unreachable_central_exits_central_unreachable(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _run_pilot(
        "--central", f"127.0.0.1:{_closed_port()}",
        "--site", "S", "--work-dir", str(tmp_path), "--min-disk-mb", "1",
        "--unreachable-timeout", "2",
        *_credentials(tmp_path),
    )  # fmt: skip
    assert result.returncode == PilotExitCode.CENTRAL_UNREACHABLE, result.stderr
    assert time.monotonic() - started < 30
    assert "pilot.central_unreachable" in result.stderr


@pytest.mark.parametrize("flag", ["--slots", "--max-jobs"])
def test_negative_numbers_are_refused(flag: str) -> None:
    result = _run_pilot("--central", "h:1", "--site", "S", flag, "-1")
    assert result.returncode == PilotExitCode.BAD_ARGUMENTS
