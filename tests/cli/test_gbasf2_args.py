"""gbasf2 refuses bad input locally, with one clear line and before contacting central.

Central is pointed at a closed port: had any of these reached it, the error would be the
"cannot reach central" one instead of the validation message.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gridpilot.cli import gbasf2
from gridpilot.cli.common import EXIT_UNREACHABLE
from gridpilot.v1 import common_pb2
from tests.cli.conftest import offline_login


def _closed_target() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture
def steering(tmp_path: Path) -> Path:
    path = tmp_path / "steer.py"
    path.write_text("import basf2\n")
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = gbasf2.main([*argv, "--central", _closed_target(), "--force"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-p", "bad name!"], "bad project name 'bad name!'"),
        (["-p", "x" * 33], "at most 32"),
        (["-p", "ok", "--priority", "11"], "priority must be between 0 and 10, got 11"),
        (["-p", "ok", "--priority", "-1"], "priority must be between 0 and 10"),
        (["-p", "ok", "--priority", "high"], "invalid int value: 'high'"),
        (["-p", "ok", "--cputime", "0"], "--cputime must be a positive"),
        (["-p", "ok", "--repetition", "0"], "--repetition must be positive"),
        (["-p", "ok", "-i", "/belle/ds", "--repetition", "3"], "--repetition is for jobs"),
        (["-p", "ok", "-i", "relative/ds"], "is not a logical path name"),
        (["-p", "ok", "-f", "/no/such/file"], "input sandbox file not found: /no/such/file"),
        (["-p", "ok", "--site", "A,B", "--banned_site", "B"], "both requested and banned: B"),
        (["-p", "ok", "--jobtype", "Analysis"], "invalid choice: 'Analysis'"),
        (["-p", "ok", "--input_dslist", "/no/such/list"], "cannot read --input_dslist"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    steering: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run([str(steering), "-s", "release-08-00-00", *extra], capsys)
    assert code != 0
    assert message in err
    assert err.count("\n") == 1, err
    assert err.startswith("gbasf2: error: ")
    assert "cannot reach central" not in err
    assert "Are you sure" not in out


def test_missing_steering_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run([str(tmp_path / "nope.py"), "-p", "ok", "-s", "r"], capsys)
    assert code == 2
    assert err == f"gbasf2: error: steering file not found: {tmp_path / 'nope.py'}\n"


def test_missing_required_option(steering: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run([str(steering), "-s", "r"], capsys)
    assert code == 2
    assert "the following arguments are required: -p/--project" in err
    assert err.count("\n") == 1


def test_empty_dslist(steering: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dslist = tmp_path / "list.txt"
    dslist.write_text("# nothing here\n\n")
    code, _, err = _run(
        [str(steering), "-p", "ok", "-s", "r", "--input_dslist", str(dslist)], capsys
    )
    assert code == 2
    assert "lists no dataset" in err


def test_valid_input_without_token_says_to_log_in(
    steering: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = gbasf2.main([str(steering), "-p", "ok", "-s", "r", "--force", "--central", "h:1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("gbasf2: error: no token: run gb2_proxy_init -g <group>")
    assert err.count("\n") == 1


def test_expired_token_says_when(
    steering: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    offline_login(monkeypatch, tmp_path, lifetime=60, age=7200)
    code = gbasf2.main([str(steering), "-p", "ok", "-s", "r", "--force", "--central", "h:1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("gbasf2: error: your token expired at ")
    assert err.endswith(" UTC: run gb2_proxy_init -g belle_user\n")


def test_valid_input_then_unreachable_central(
    steering: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    offline_login(monkeypatch, tmp_path)
    target = _closed_target()
    code = gbasf2.main([str(steering), "-p", "ok", "-s", "r", "--central", target, "--force"])
    err = capsys.readouterr().err
    assert code == EXIT_UNREACHABLE
    assert err.startswith(f"gbasf2: error: cannot reach central at {target}: ")
    assert err.count("\n") == 1


def test_specs_one_per_file_or_repetition(steering: Path) -> None:
    args = gbasf2.build_parser().parse_args(
        [str(steering), "-p", "proj", "-s", "rel", "--cputime", "10", "--site", "A,B", "-i", "/d"]
    )
    sub = gbasf2.validate(args)
    specs = gbasf2.build_specs(sub, ["/d/a.root", "/d/b.root"], "sb1")
    assert [list(s.input_lfns) for s in specs] == [["/d/a.root"], ["/d/b.root"]]
    assert {s.job_name for s in specs} == {"proj_000", "proj_001"}
    first: common_pb2.JobSpec = specs[0]
    assert first.cpu_time == 600
    assert list(first.sites) == ["A", "B"]
    assert first.steering_file == "steer.py"
    assert first.input_sandbox == "sb1"
    assert first.job_type == "User"

    args = gbasf2.build_parser().parse_args(
        [str(steering), "-p", "proj", "-s", "rel", "--repetition", "4"]
    )
    specs = gbasf2.build_specs(gbasf2.validate(args), [], "sb1")
    assert len(specs) == 4
    assert all(not s.input_lfns for s in specs)
