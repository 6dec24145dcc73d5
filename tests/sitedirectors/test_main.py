"""`python -m sitedirectors`: configuration errors are one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gridpilot.channel import write_token_file
from gridpilot.security.ca import init_ca
from sitedirectors.main import EXIT_CONFIG, main

REPO = Path(__file__).resolve().parents[2]

VALID = """
[director]
name = "d"
central = "127.0.0.1:1"
work_dir = "{work}"
rpc_timeout = 0.5
ca = "{ca}"
token_file = "{token}"

[[queues]]
name = "q"
site = "S"
ce = "C"
backend = "{backend}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "director.toml"
    path.write_text(text)
    return path


def valid(tmp_path: Path, backend: str = "local") -> str:
    """A configuration whose CA and token file exist (central itself is not running)."""
    ca = tmp_path / "ca" / "ca.pem"
    if not ca.exists():
        init_ca(tmp_path / "ca")
    token = tmp_path / "director.token"
    write_token_file(token, "director-token")
    return VALID.format(work=tmp_path / "w", backend=backend, ca=ca, token=token)


def test_config_error_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, '[director]\nname = "d"\ncentral = "x"\nbogus = 1\n')
    proc = subprocess.run(
        [sys.executable, "-m", "sitedirectors", "--config", str(path), "--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EXIT_CONFIG
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "bogus" in lines[0]
    assert str(path) in lines[0]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.toml")]) == EXIT_CONFIG
    assert "not found" in capsys.readouterr().err


def test_unknown_backend_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, valid(tmp_path, "nosuch"))
    assert main(["--config", str(path), "--once"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "queues[q].backend" in err
    assert "nosuch" in err


def test_bad_backend_options_are_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = valid(tmp_path)
    path = write(tmp_path, text + "[queues.backend_options]\nkill_grace = -3\n")
    assert main(["--config", str(path)]) == EXIT_CONFIG
    assert "kill_grace" in capsys.readouterr().err


def test_once_without_central_fails_cleanly(tmp_path: Path) -> None:
    path = write(tmp_path, valid(tmp_path))
    assert main(["--config", str(path), "--once"]) == 1


def test_token_file_problems_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = valid(tmp_path)
    token = tmp_path / "director.token"
    token.chmod(0o644)
    path = write(tmp_path, text)
    assert main(["--config", str(path), "--once"]) == EXIT_CONFIG
    assert "director.token_file: token file" in capsys.readouterr().err
    token.unlink()
    assert main(["--config", str(path), "--once"]) == EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err
