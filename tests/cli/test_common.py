"""Shared CLI helpers: id parsing, formatting, confirmation, the one-line error convention."""

from __future__ import annotations

import io

import pytest

from gridpilot.cli.common import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    UsageError,
    confirm,
    format_id_ranges,
    format_size,
    format_time,
    parse_job_ids,
    run_command,
    split_names,
)
from gridpilot.client_errors import CentralUnreachableError


def test_parse_job_ids_accepts_gbasf2_forms() -> None:
    assert parse_job_ids(["12"]) == [12]
    assert parse_job_ids(["12,14", "13"]) == [12, 13, 14]
    assert parse_job_ids(["20-23", "21"]) == [20, 21, 22, 23]
    assert parse_job_ids([]) == []


@pytest.mark.parametrize("bad", ["x", "0", "5-3", "-3", "1-2-3", "2-"])
def test_parse_job_ids_refuses_garbage(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_job_ids([bad])


def test_format_id_ranges() -> None:
    assert format_id_ranges([3, 1, 2, 7, 9, 10]) == "1-3, 7, 9-10"
    assert format_id_ranges([]) == ""


def test_format_size_and_time() -> None:
    assert format_size(999) == "999 B"
    assert format_size(1500) == "1.5 kB"
    assert format_size(2_500_000_000) == "2.5 GB"
    assert format_size(3_000_000_000_000_000) == "3000.0 TB"
    assert format_time(0) == ""
    assert format_time(86400.0) == "1970-01-02 00:00:00"


def test_split_names_keeps_order_and_drops_duplicates() -> None:
    assert split_names(["A,B", " C ,A", ""]) == ["A", "B", "C"]
    assert split_names(None) == []


def test_confirm(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert confirm("Go?", force=True)
    assert capsys.readouterr().out == ""
    for answer, expected in (("y\n", True), ("\n", True), ("n\n", False), ("nope\n", False)):
        monkeypatch.setattr("sys.stdin", io.StringIO(answer))
        assert confirm("Go?", force=False) is expected
    # No terminal and nothing to read: never proceed.
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert confirm("Go?", force=False) is False
    assert "Go? [Y/n]" in capsys.readouterr().out


def test_run_command_prints_one_line_per_failure() -> None:
    def fail_multiline() -> int:
        raise CliError("first line\nsecond line")

    err = io.StringIO()
    assert run_command("gb2_x", fail_multiline, stderr=err) == 1
    assert err.getvalue() == "gb2_x: error: first line second line\n"

    def unreachable() -> int:
        raise CentralUnreachableError("cannot reach central at h:1: refused")

    err = io.StringIO()
    assert run_command("gb2_x", unreachable, stderr=err) == EXIT_UNREACHABLE
    assert err.getvalue().count("\n") == 1

    def usage() -> int:
        raise UsageError("bad")

    assert run_command("gb2_x", usage, stderr=io.StringIO()) == EXIT_USAGE


def test_run_command_turns_argparse_exit_into_a_code() -> None:
    def exits() -> int:
        raise SystemExit(2)

    assert run_command("p", exits) == 2
