"""gb2_ds_list and gb2_ds_get against a real central and real file:// SEs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes, adler32_of_file
from gridpilot.cli import gb2_ds
from tests.cli.conftest import DATASET, N_FILES, CliRunner, register_files
from tests.support.central_process import FAILOVER_SE, LOCAL_SE, SITE, CentralHandle

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("alice")]


def test_ds_list(central: CentralHandle, run_cli: CliRunner) -> None:
    c = ["--central", central.target]
    result = run_cli(gb2_ds.ds_list_main, [DATASET, "--json", *c])
    assert result.code == 0, result.err
    files = json.loads(result.out)
    assert [f["lfn"] for f in files] == [f"{DATASET}/sub00/f{i}.root" for i in range(N_FILES)]
    for f in files:
        on_se = central.se_dirs[LOCAL_SE] / f["lfn"].lstrip("/")
        assert f["size"] == on_se.stat().st_size
        assert f["adler32"] == adler32_of_file(on_se)
        assert [r["se"] for r in f["replicas"]] == [LOCAL_SE]

    table = run_cli(gb2_ds.ds_list_main, [DATASET, *c])
    assert table.code == 0
    assert f"{N_FILES} file(s)" in table.out
    assert files[0]["adler32"] in table.out

    # A bare project name means the caller's own /belle/user/<user>/<project>.
    by_project = run_cli(gb2_ds.ds_list_main, ["ds_in", "--json", *c])
    assert json.loads(by_project.out) == files

    missing = run_cli(gb2_ds.ds_list_main, ["/belle/user/alice/nothing", *c])
    assert missing.code != 0
    assert (
        missing.err == "gb2_ds_list: error: dataset /belle/user/alice/nothing is unknown or empty\n"
    )


def test_ds_get_downloads_verifies_then_skips(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    dest = tmp_path / "dl"
    argv = [DATASET, "-d", str(dest), "--central", central.target]
    first = run_cli(gb2_ds.ds_get_main, argv)
    assert first.code == 0, first.out + first.err
    assert f"{N_FILES} downloaded, 0 skipped (already present and verified), 0 failed." in first.out
    for i in range(N_FILES):
        local = dest / "ds_in" / "sub00" / f"f{i}.root"
        on_se = central.se_dirs[LOCAL_SE] / DATASET.lstrip("/") / "sub00" / f"f{i}.root"
        assert local.read_bytes() == on_se.read_bytes()

    second = run_cli(gb2_ds.ds_get_main, argv)
    assert second.code == 0
    assert f"0 downloaded, {N_FILES} skipped" in second.out

    # A damaged local copy is fetched again, the intact ones are not.
    (dest / "ds_in" / "sub00" / "f1.root").write_bytes(b"truncated")
    third = run_cli(gb2_ds.ds_get_main, argv)
    assert f"1 downloaded, {N_FILES - 1} skipped" in third.out


def test_ds_get_falls_back_to_the_next_replica(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    lpn = "/belle/user/alice/two_copies"
    data = os.urandom(3000)
    register_files(central, {f"{lpn}/a.root": data}, ses=(LOCAL_SE, FAILOVER_SE))
    # The local SE (ranked first for SITE) lost its copy; the other SE still has it.
    (central.se_dirs[LOCAL_SE] / lpn.lstrip("/") / "a.root").unlink()
    result = run_cli(
        gb2_ds.ds_get_main,
        ["two_copies", "-d", str(tmp_path), "--site", SITE, "--central", central.target],
    )
    assert result.code == 0, result.out
    assert "1 downloaded, 0 skipped" in result.out
    assert (tmp_path / "two_copies" / "a.root").read_bytes() == data


def test_ds_get_reports_corrupt_replicas_and_fails(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    lpn = "/belle/user/alice/corrupt"
    good, other = os.urandom(1000), os.urandom(1000)
    register_files(central, {f"{lpn}/ok.root": good, f"{lpn}/bad.root": good})
    (central.se_dirs[LOCAL_SE] / lpn.lstrip("/") / "bad.root").write_bytes(other)
    assert adler32_of_bytes(other) != adler32_of_bytes(good)
    result = run_cli(gb2_ds.ds_get_main, [lpn, "-d", str(tmp_path), "--central", central.target])
    assert result.code == 1
    assert f"FAILED {lpn}/bad.root: {LOCAL_SE}: size or adler32 differs" in result.out
    assert "1 downloaded, 0 skipped (already present and verified), 1 failed." in result.out
    assert (tmp_path / "corrupt" / "ok.root").read_bytes() == good
    assert not (tmp_path / "corrupt" / "bad.root").exists()


def test_ds_get_argument_errors(central: CentralHandle, run_cli: CliRunner) -> None:
    c = ["--central", central.target]
    bad_target = run_cli(gb2_ds.ds_get_main, ["not a project!", *c])
    assert bad_target.code == 2
    assert "neither an LPN" in bad_target.err
    workers = run_cli(gb2_ds.ds_get_main, [DATASET, "--workers", "0", *c])
    assert workers.code == 2
    assert "--workers must be between 1 and 16" in workers.err
