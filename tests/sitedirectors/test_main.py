"""`python -m sitedirectors`: configuration errors are one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sitedirectors.main import EXIT_CONFIG, main

REPO = Path(__file__).resolve().parents[2]

VALID = """
[director]
name = "d"
central = "127.0.0.1:1"
work_dir = "{work}"
rpc_timeout = 0.5

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
    path = write(tmp_path, VALID.format(work=tmp_path / "w", backend="slurm"))
    assert main(["--config", str(path), "--once"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "queues[q].backend" in err
    assert "slurm" in err


def test_bad_backend_options_are_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.format(work=tmp_path / "w", backend="local")
    path = write(tmp_path, text + "[queues.backend_options]\nkill_grace = -3\n")
    assert main(["--config", str(path)]) == EXIT_CONFIG
    assert "kill_grace" in capsys.readouterr().err


def test_once_without_central_fails_cleanly(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.format(work=tmp_path / "w", backend="local"))
    assert main(["--config", str(path), "--once"]) == 1
