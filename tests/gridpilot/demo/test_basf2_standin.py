from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gridpilot
from gridpilot.demo.basf2_standin import (
    OUTPUT_MAGIC,
    main,
    render_output,
    summarize_file,
)

# The checkout holding the gridpilot package, for subprocesses when it is not installed.
CODE_ROOT = str(Path(gridpilot.__file__).resolve().parent.parent)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "steering.py").write_text("import basf2\n")
    (tmp_path / "in1.root").write_bytes(b"a" * 5000)
    (tmp_path / "in2.root").write_bytes(b"b" * 7000)
    return tmp_path


def test_processes_inputs_and_writes_output(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["steering.py", "-i", "in1.root", "-i", "in2.root", "-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "[INFO] Processed event 5" in out
    content = (workdir / "output.root").read_bytes()
    expected = render_output(
        summarize_file(workdir / "steering.py"),
        [summarize_file(workdir / "in1.root"), summarize_file(workdir / "in2.root")],
        5,
    )
    assert content == expected
    lines = content.decode().splitlines()
    assert lines[0] == OUTPUT_MAGIC
    assert lines[2].startswith("input in1.root 5000 ")
    assert "events 5" in lines


def test_output_depends_on_inputs(workdir: Path) -> None:
    assert main(["steering.py", "-i", "in1.root", "-o", "a.root", "-n", "3"]) == 0
    assert main(["steering.py", "-i", "in2.root", "-o", "b.root", "-n", "3"]) == 0
    assert (workdir / "a.root").read_bytes() != (workdir / "b.root").read_bytes()


def test_missing_steering_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope.py"]) == 1
    assert "[FATAL] Could not find steering file: nope.py" in capsys.readouterr().err
    assert not (workdir / "output.root").exists()


def test_missing_input(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["steering.py", "-i", "absent.root"]) == 1
    assert "Could not open input file absent.root" in capsys.readouterr().err


def test_exit_code_option_writes_no_output(workdir: Path) -> None:
    assert main(["steering.py", "-n", "2", "--standin-exit-code", "3"]) == 3
    assert not (workdir / "output.root").exists()


def test_unknown_options_are_ignored(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["steering.py", "-n", "1", "--experiment", "12"]) == 0
    assert "ignores options: --experiment 12" in capsys.readouterr().out


def test_seconds_and_memory_options_as_a_process(workdir: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridpilot.demo.basf2_standin",
            "steering.py",
            "-n",
            "4",
            "--standin-seconds",
            "0.8",
            "--standin-rss-mb",
            "20",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={**os.environ, "PYTHONPATH": CODE_ROOT},
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 0.8
    assert proc.stdout.count("[INFO] Processed event") == 4
    assert (workdir / "output.root").exists()
