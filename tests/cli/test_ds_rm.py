"""gb2_ds_rm against a real central: confirmation, removal of every copy and catalog entry by
central's data requests (followed until done), and refusals of other people's files."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Iterator

import pytest

from gridpilot.cli import gb2_ds, gb2_ds_admin
from tests.cli.conftest import CliResult, CliRunner, register_files
from tests.support.central_process import (
    FAILOVER_SE,
    LOCAL_SE,
    SITE,
    CentralHandle,
    default_config,
    running_central,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("alice")]

SICK_SE = "SICK-SE"  # its root becomes a file: removals from it fail and are retried


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    tmp = tmp_path_factory.mktemp("central")
    ses = [
        *default_config(tmp)["storage_elements"],
        {"name": SICK_SE, "site": SITE, "url": f"file://{tmp / 'se' / 'sick'}"},
    ]
    with running_central(tmp, {"storage_elements": ses}) as handle:
        yield handle


class _Terminal(io.StringIO):
    """What the user types at a terminal."""

    def isatty(self) -> bool:
        return True


def _c(central: CentralHandle) -> list[str]:
    return ["--central", central.target]


def _dataset(central: CentralHandle, lpn: str, n: int = 3) -> list[str]:
    lfns = [f"{lpn}/sub00/f{i}.root" for i in range(n)]
    register_files(
        central, {lfn: os.urandom(100 + i) for i, lfn in enumerate(lfns)}, (LOCAL_SE, FAILOVER_SE)
    )
    return lfns


def _on_ses(central: CentralHandle, lfn: str) -> list[str]:
    return [
        se for se in (LOCAL_SE, FAILOVER_SE) if (central.se_dirs[se] / lfn.lstrip("/")).exists()
    ]


def _in_catalog(central: CentralHandle, run_cli: CliRunner, lpn: str) -> set[str]:
    result = run_cli(gb2_ds.ds_list_main, [lpn, "--json", *_c(central)])
    return {f["lfn"] for f in json.loads(result.out)} if result.code == 0 else set()


def test_rm_dataset_removes_every_copy_and_entry(
    central: CentralHandle, run_cli: CliRunner
) -> None:
    lfns = _dataset(central, "/belle/user/alice/rm1")
    assert all(_on_ses(central, lfn) == [LOCAL_SE, FAILOVER_SE] for lfn in lfns)
    result = run_cli(gb2_ds_admin.ds_rm_main, ["rm1", "-y", "--timeout", "60", *_c(central)])
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[0].startswith("3 file(s), ")
    assert result.out.splitlines()[-1] == "3 removed, 0 failed, 0 refused, 0 still waiting."
    assert all(_on_ses(central, lfn) == [] for lfn in lfns)
    assert _in_catalog(central, run_cli, "/belle/user/alice/rm1") == set()


def _at_terminal(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    typed: str,
) -> CliResult:
    monkeypatch.setattr("sys.stdin", _Terminal(typed))
    code = gb2_ds_admin.ds_rm_main(argv)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def test_rm_asks_and_refuses_without_a_terminal(
    central: CentralHandle,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lpn = "/belle/user/alice/rm2"
    lfns = _dataset(central, lpn, 2)
    piped = run_cli(gb2_ds_admin.ds_rm_main, [lpn, *_c(central)], stdin="y\n")
    assert piped.code == 4
    assert piped.err == (
        "gb2_ds_rm: error: not removing 2 file(s) without confirmation: stdin is not a "
        "terminal (use -y to remove without asking)\n"
    )
    assert _in_catalog(central, run_cli, lpn) == set(lfns)

    no = _at_terminal(monkeypatch, capsys, [lpn, *_c(central)], "n\n")
    assert no.code == 4
    assert "Remove 2 file(s) from every SE and the catalog? [y/N]" in no.out
    assert no.out.endswith("Nothing was removed.\n")
    assert _in_catalog(central, run_cli, lpn) == set(lfns)

    yes = _at_terminal(monkeypatch, capsys, [lpn, "--timeout", "60", *_c(central)], "y\n")
    assert yes.code == 0, yes.out + yes.err
    assert _in_catalog(central, run_cli, lpn) == set()


def test_rm_of_someone_elses_file_is_refused_per_file(
    central: CentralHandle, run_cli: CliRunner
) -> None:
    [theirs] = _dataset(central, "/belle/user/bob/theirs", 1)
    [mine] = _dataset(central, "/belle/user/alice/rm3", 1)
    argv = ["--lfn", theirs, "--lfn", mine, "--lfn", "/belle/user/alice/rm3/nothing.root"]
    result = run_cli(gb2_ds_admin.ds_rm_main, [*argv, "-y", "--json", *_c(central)])
    assert result.code == 1
    report = json.loads(result.out)
    assert (report["done"], report["refused"], report["failed"], report["waiting"]) == (1, 2, 0, 0)
    by_lfn = {f["lfn"]: f for f in report["files"]}
    assert by_lfn[mine]["status"] == "Done"
    assert by_lfn[theirs]["status"] == "Refused"
    assert by_lfn[theirs]["request_id"] == 0
    assert "may remove files only under /belle/user/alice/" in by_lfn[theirs]["error"]
    assert by_lfn["/belle/user/alice/rm3/nothing.root"]["error"] == "not in the catalog"
    assert _on_ses(central, theirs) == [LOCAL_SE, FAILOVER_SE]
    assert _on_ses(central, mine) == []

    text = run_cli(gb2_ds_admin.ds_rm_main, ["--lfn", theirs, "-y", *_c(central)])
    assert text.code == 1
    assert text.out.splitlines()[0].startswith(f"REFUSED {theirs}: ")
    assert text.out.splitlines()[-1] == "0 removed, 0 failed, 1 refused, 0 still waiting."


def test_rm_no_wait_queues_and_returns(central: CentralHandle, run_cli: CliRunner) -> None:
    lpn = "/belle/user/alice/rm4"
    lfns = _dataset(central, lpn, 2)
    result = run_cli(gb2_ds_admin.ds_rm_main, [lpn, "-y", "--no-wait", *_c(central)])
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[-1] == (
        "2 removal(s) queued, 0 refused; central removes the files shortly."
    )
    # Central's executor runs them on its own; bounded wait.
    deadline = time.monotonic() + 30
    while _in_catalog(central, run_cli, lpn) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _in_catalog(central, run_cli, lpn) == set()
    assert all(_on_ses(central, lfn) == [] for lfn in lfns)


def test_rm_argument_errors(central: CentralHandle, run_cli: CliRunner) -> None:
    c = _c(central)
    both = run_cli(gb2_ds_admin.ds_rm_main, ["rm5", "--lfn", "/belle/user/alice/x", *c])
    assert both.code == 2
    assert "not both" in both.err
    neither = run_cli(gb2_ds_admin.ds_rm_main, ["-y", *c])
    assert neither.code == 2
    relative = run_cli(gb2_ds_admin.ds_rm_main, ["--lfn", "x.root", "-y", *c])
    assert relative.code == 2
    assert "is not an LFN" in relative.err
    unknown = run_cli(gb2_ds_admin.ds_rm_main, ["no_such_ds", "-y", *c])
    assert unknown.code == 1
    assert "unknown or empty" in unknown.err


def test_rm_that_cannot_finish_in_time_is_reported(
    central: CentralHandle, run_cli: CliRunner
) -> None:
    lfn = "/belle/user/alice/rm6/a.root"
    register_files(central, {lfn: b"data"}, (SICK_SE,))
    root = central.se_dirs[SICK_SE]
    shutil.rmtree(root)
    root.write_text("not a directory")
    result = run_cli(
        gb2_ds_admin.ds_rm_main, ["--lfn", lfn, "-y", "--timeout", "1.5", *_c(central)]
    )
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[-1] == "0 removed, 0 failed, 0 refused, 1 still waiting."
    assert lines[-2].startswith(f"WAITING {lfn}: request ")
    assert "not done after 1.5 s" in lines[-2]
    # Central tries at once; a very slow machine may not have failed an attempt yet.
    if "(attempt " in lines[-2]:
        assert "unavailable" in lines[-2]
    assert _in_catalog(central, run_cli, "/belle/user/alice/rm6") == {lfn}
