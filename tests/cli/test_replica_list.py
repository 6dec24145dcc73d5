"""gb2_replica_list (read order and why, skipped copies) and what gb2_ds_get does with a bad
copy (reads the next one, reports it: it then ranks last as suspect) and after an interrupted
run (stale partial downloads removed, verified files skipped), against a real central."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gridpilot.cli import gb2_ds, gb2_ds_admin
from gridpilot.client import CentralClient
from gridpilot.client_errors import CentralRequestError
from gridpilot.v1 import data_pb2
from tests.cli.conftest import CliRunner, register_files
from tests.support.central_process import (
    LOCAL_SE,
    SITE,
    CentralHandle,
    default_config,
    running_central,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("alice")]

FAR_SE = "FAR-SE"  # distance 10 from SITE
NODIST_SE = "NODIST-SE"  # no distance configured
OFF_SE = "OFF-SE"  # reads disabled by the configuration
OTHER_SITE = "GP.OTHER.test"


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    tmp = tmp_path_factory.mktemp("central")
    extra: list[dict[str, Any]] = [
        {"name": name, "site": OTHER_SITE, "url": f"file://{tmp / 'se' / name.lower()}"}
        for name in (FAR_SE, NODIST_SE, OFF_SE)
    ]
    extra[-1]["read"] = False
    defaults = default_config(tmp)
    overrides = {
        "sites": [*defaults["sites"], {"name": OTHER_SITE}],
        "storage_elements": defaults["storage_elements"] + extra,
        "distances": {SITE: {FAR_SE: 10}},
    }
    with running_central(tmp, overrides) as handle:
        yield handle


def _c(central: CentralHandle) -> list[str]:
    return ["--central", central.target]


def _replicas(central: CentralHandle, run_cli: CliRunner, lfn: str) -> dict[str, Any]:
    result = run_cli(gb2_ds_admin.replica_list_main, [lfn, "--site", SITE, "--json", *_c(central)])
    assert result.code == 0, result.err
    [entry] = json.loads(result.out)
    assert isinstance(entry, dict)
    return entry


def test_replica_order_reasons_and_skipped(central: CentralHandle, run_cli: CliRunner) -> None:
    lfn = "/belle/user/alice/rl/a.root"
    data = os.urandom(1234)
    register_files(central, {lfn: data}, (NODIST_SE, OFF_SE, FAR_SE, LOCAL_SE))

    entry = _replicas(central, run_cli, lfn)
    assert entry["size"] == 1234
    assert [(r["se"], r["rank_reason"], r["cost"]) for r in entry["replicas"]] == [
        (LOCAL_SE, "local SE", None),
        (FAR_SE, "distance 10", 10.0),
        (NODIST_SE, "no distance", None),
    ]
    assert [(r["se"], r["rank_reason"]) for r in entry["skipped"]] == [
        (OFF_SE, "reads disabled by an administrator")
    ]
    assert entry["replicas"][0]["url"].endswith(lfn)

    table = run_cli(gb2_ds_admin.replica_list_main, [lfn, "--site", SITE, *_c(central)])
    assert table.code == 0, table.err
    assert f"in the order a job at {SITE} reads them" in table.out
    rows = [line for line in table.out.splitlines() if "-SE" in line]
    assert [row.split("│")[2].strip() for row in rows] == [LOCAL_SE, FAR_SE, NODIST_SE, OFF_SE]
    assert [row.split("│")[1].strip() for row in rows] == ["1", "2", "3", "skipped"]
    assert "distance 10" in rows[1]
    assert "reads disabled by an administrator" in rows[3]

    # No site: catalog order.
    plain = run_cli(gb2_ds_admin.replica_list_main, [lfn, "--json", *_c(central)])
    [unranked] = json.loads(plain.out)
    assert {r["rank_reason"] for r in unranked["replicas"]} == {"catalog order"}

    missing = run_cli(
        gb2_ds_admin.replica_list_main, [lfn, "/belle/user/alice/rl/none.root", *_c(central)]
    )
    assert missing.code == 1
    assert missing.err == (
        "gb2_replica_list: error: not in the catalog: /belle/user/alice/rl/none.root\n"
    )
    assert LOCAL_SE in missing.out  # the known one is still shown


def test_ds_get_reads_past_a_bad_copy_and_reports_it(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    lpn = "/belle/user/alice/badcopy"
    lfn = f"{lpn}/a.root"
    good = os.urandom(4000)
    register_files(central, {lfn: good}, (LOCAL_SE, FAR_SE))
    # Same size, other contents: only the adler32 tells.
    (central.se_dirs[LOCAL_SE] / lfn.lstrip("/")).write_bytes(bytes([good[0] ^ 0xFF]) + good[1:])
    assert [r["se"] for r in _replicas(central, run_cli, lfn)["replicas"]] == [LOCAL_SE, FAR_SE]

    result = run_cli(gb2_ds.ds_get_main, [lpn, "-d", str(tmp_path), "--site", SITE, *_c(central)])
    assert result.code == 0, result.out + result.err
    assert "1 downloaded, 0 skipped" in result.out
    assert "Reported 1 bad copy(ies) to central as suspect" in result.out
    assert (tmp_path / "badcopy" / "a.root").read_bytes() == good

    # Read last from now on; central's check confirms it (bounded wait).
    deadline = time.monotonic() + 30
    while True:
        entry = _replicas(central, run_cli, lfn)
        last = entry["replicas"][-1]
        if "confirmed" in last["rank_reason"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [r["se"] for r in entry["replicas"]] == [FAR_SE, LOCAL_SE]
    assert last["rank_reason"].startswith("suspect: confirmed: adler32 ")


def test_ds_get_after_an_interrupted_run(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    lpn = "/belle/user/alice/resume"
    files = {f"{lpn}/sub/f{i}.root": os.urandom(500 + i) for i in range(3)}
    register_files(central, files)
    argv = [lpn, "-d", str(tmp_path), *_c(central)]
    assert run_cli(gb2_ds.ds_get_main, argv).code == 0

    # What a killed run leaves: temporaries next to the files, one file never renamed.
    ds_dir = tmp_path / "resume"
    (ds_dir / "sub" / "f2.root").unlink()
    stale = [ds_dir / "sub" / ".gridpilot-abc123.part", ds_dir / ".gridpilot-def456.part"]
    for path in stale:
        path.write_bytes(b"half a file")
    unrelated = ds_dir / "notes.part"
    unrelated.write_text("mine")

    result = run_cli(gb2_ds.ds_get_main, argv)
    assert result.code == 0, result.out + result.err
    assert "Removed 2 partial download(s) left by an interrupted run." in result.out
    assert "1 downloaded, 2 skipped (already present and verified), 0 failed." in result.out
    assert not any(path.exists() for path in stale)
    assert unrelated.exists()
    for lfn, data in files.items():
        assert (ds_dir / "sub" / lfn.rsplit("/", 1)[1]).read_bytes() == data


def test_a_failed_suspect_report_only_warns(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lpn = "/belle/user/alice/noreport"
    lfn = f"{lpn}/a.root"
    good = os.urandom(2000)
    register_files(central, {lfn: good}, (LOCAL_SE, FAR_SE))
    (central.se_dirs[LOCAL_SE] / lfn.lstrip("/")).write_bytes(bytes([good[0] ^ 0xFF]) + good[1:])
    real_call = CentralClient.call

    def call(self: CentralClient, method: Any, request: Any, timeout: float | None = None) -> Any:
        if isinstance(request, data_pb2.ReportDataAccessRequest):
            raise CentralRequestError("central error (INTERNAL): boom", grpc.StatusCode.INTERNAL)
        return real_call(self, method, request, timeout)

    monkeypatch.setattr(CentralClient, "call", call)
    result = run_cli(gb2_ds.ds_get_main, [lpn, "-d", str(tmp_path), "--site", SITE, *_c(central)])
    assert result.code == 0, result.out + result.err
    assert "1 downloaded, 0 skipped" in result.out
    assert (
        "gb2_ds_get: warning: could not report 1 bad copy(ies) to central: "
        "central error (INTERNAL): boom\n"
    ) in result.err
    assert (tmp_path / "noreport" / "a.root").read_bytes() == good
