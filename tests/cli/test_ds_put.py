"""gb2_ds_put against a real central and real file:// SEs: upload, verify, register, resume,
refusals, and nothing half-written when an SE fails."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes, adler32_of_file
from gridpilot.cli import gb2_ds, gb2_ds_admin
from gridpilot.v1 import data_pb2, data_pb2_grpc
from tests.cli.conftest import CliRunner
from tests.support.central_process import (
    LOCAL_SE,
    SITE,
    CentralHandle,
    default_config,
    running_central,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("alice")]

RO_SE = "RO-SE"
BROKEN_SE = "BROKEN-SE"


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    """Central with two more file:// SEs of its own: one an admin makes read-only, one whose
    root the test breaks. No probes run (the default period is far longer than the tests)."""
    tmp = tmp_path_factory.mktemp("central")
    ses = default_config(tmp)["storage_elements"] + [
        {"name": name, "site": SITE, "url": f"file://{tmp / 'se' / name.lower()}"}
        for name in (RO_SE, BROKEN_SE)
    ]
    with running_central(tmp, {"storage_elements": ses}) as handle:
        yield handle


def _c(central: CentralHandle) -> list[str]:
    return ["--central", central.target]


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _listed(central: CentralHandle, run_cli: CliRunner, lpn: str) -> dict[str, str]:
    """LFN -> adler32 as gb2_ds_list shows the catalog ({} for an unknown dataset)."""
    result = run_cli(gb2_ds.ds_list_main, [lpn, "--json", *_c(central)])
    if result.code != 0:
        assert "unknown or empty" in result.err
        return {}
    return {f["lfn"]: f["adler32"] for f in json.loads(result.out)}


def test_put_directory_then_again_skips(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    files = {"a.root": os.urandom(3000), "sub/b.root": os.urandom(10), "sub/deep/c.root": b""}
    src = _tree(tmp_path / "src", files)
    lpn = "/belle/user/alice/put1"
    first = run_cli(
        gb2_ds_admin.ds_put_main, [str(src), "-d", "put1", "--se", LOCAL_SE, "--json", *_c(central)]
    )
    assert first.code == 0, first.out + first.err
    report = json.loads(first.out)
    assert (report["lpn"], report["se"]) == (lpn, LOCAL_SE)
    assert (report["uploaded"], report["skipped"], report["failed"]) == (3, 0, 0)
    assert [f["lfn"] for f in report["files"]] == [f"{lpn}/{rel}" for rel in sorted(files)]

    expected = {f"{lpn}/{rel}": adler32_of_bytes(data) for rel, data in files.items()}
    assert _listed(central, run_cli, lpn) == expected
    for rel, data in files.items():
        assert (central.se_dirs[LOCAL_SE] / lpn.lstrip("/") / rel).read_bytes() == data

    # The same files again (a resumed upload): nothing is transferred.
    again = run_cli(gb2_ds_admin.ds_put_main, [str(src), "-d", lpn, "--se", LOCAL_SE, *_c(central)])
    assert again.code == 0, again.out + again.err
    assert again.out.splitlines()[-1] == (
        "0 uploaded, 3 skipped (already registered with the same checksum), 0 failed."
    )


def test_single_files_land_by_name(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    one = _tree(tmp_path / "x", {"one.root": b"1" * 100}) / "one.root"
    two = _tree(tmp_path / "y", {"two.root": b"2" * 200}) / "two.root"
    result = run_cli(
        gb2_ds_admin.ds_put_main,
        [str(one), str(two), "-d", "singles", "--se", LOCAL_SE, *_c(central)],
    )
    assert result.code == 0, result.out + result.err
    assert set(_listed(central, run_cli, "/belle/user/alice/singles")) == {
        "/belle/user/alice/singles/one.root",
        "/belle/user/alice/singles/two.root",
    }


def test_changed_file_under_an_existing_lfn_fails_alone(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    lpn = "/belle/user/alice/put2"
    original = os.urandom(500)
    src = _tree(tmp_path / "src", {"keep.root": os.urandom(400), "changed.root": original})
    argv = [str(src), "-d", lpn, "--se", LOCAL_SE, *_c(central)]
    assert run_cli(gb2_ds_admin.ds_put_main, argv).code == 0

    (src / "changed.root").write_bytes(os.urandom(500))
    (src / "new.root").write_bytes(b"new")
    result = run_cli(gb2_ds_admin.ds_put_main, argv)
    assert result.code == 1
    failed = [line for line in result.out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1
    assert failed[0].startswith(f"FAILED {lpn}/changed.root ({src / 'changed.root'}): ")
    assert "already registered with other contents" in failed[0]
    assert f"gb2_ds_rm --lfn {lpn}/changed.root" in failed[0]
    assert result.out.splitlines()[-1] == (
        "1 uploaded, 1 skipped (already registered with the same checksum), 1 failed."
    )
    # The registered copy was not overwritten, the catalog still describes it.
    on_se = central.se_dirs[LOCAL_SE] / lpn.lstrip("/") / "changed.root"
    assert on_se.read_bytes() == original
    assert _listed(central, run_cli, lpn)[f"{lpn}/changed.root"] == adler32_of_bytes(original)
    assert f"{lpn}/new.root" in _listed(central, run_cli, lpn)


def test_read_only_se_is_refused_before_any_upload(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    with central.sync_channel(central.admin_token()) as channel:
        data_pb2_grpc.DataServiceStub(channel).SetStorageElementStatus(
            data_pb2.SetStorageElementStatusRequest(
                name=RO_SE, read_allowed=True, write_allowed=False
            ),
            timeout=10,
        )
    src = _tree(tmp_path / "src", {"a.root": b"a" * 10})
    result = run_cli(gb2_ds_admin.ds_put_main, [str(src), "-d", "ro", "--se", RO_SE, *_c(central)])
    assert result.code == 1
    assert result.err == (
        f"gb2_ds_put: error: storage element {RO_SE} takes no writes now: "
        "writes disabled by an administrator\n"
    )
    assert not any(central.se_dirs[RO_SE].rglob("*"))
    assert _listed(central, run_cli, "/belle/user/alice/ro") == {}

    unknown = run_cli(
        gb2_ds_admin.ds_put_main, [str(src), "-d", "ro", "--se", "NO-SE", *_c(central)]
    )
    assert unknown.code == 1
    assert "unknown storage element 'NO-SE' (known: " in unknown.err


def test_failing_se_leaves_nothing_registered(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    root = central.se_dirs[BROKEN_SE]
    shutil.rmtree(root)
    root.write_text("not a directory any more")
    src = _tree(tmp_path / "src", {"a.root": b"a" * 10, "b.root": b"b" * 20})
    result = run_cli(
        gb2_ds_admin.ds_put_main, [str(src), "-d", "broken", "--se", BROKEN_SE, *_c(central)]
    )
    assert result.code == 1
    failed = [line for line in result.out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2
    assert all("is unavailable" in line for line in failed)
    assert result.out.splitlines()[-1].endswith(
        "0 uploaded, 0 skipped (already registered with the same checksum), 2 failed."
    )
    assert _listed(central, run_cli, "/belle/user/alice/broken") == {}


def test_refusals_before_any_transfer(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src", {"a.root": b"a"})
    c = _c(central)
    elsewhere = run_cli(
        gb2_ds_admin.ds_put_main, [str(src), "-d", "/belle/user/bob/x", "--se", LOCAL_SE, *c]
    )
    assert elsewhere.code == 1
    assert elsewhere.err == (
        "gb2_ds_put: error: you may write only under /belle/user/alice/, not /belle/user/bob/x\n"
    )
    assert not (central.se_dirs[LOCAL_SE] / "belle/user/bob").exists()

    missing = run_cli(
        gb2_ds_admin.ds_put_main, [str(tmp_path / "nope"), "-d", "x", "--se", LOCAL_SE, *c]
    )
    assert missing.code == 2
    assert "does not exist" in missing.err
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_cli(gb2_ds_admin.ds_put_main, [str(empty), "-d", "x", "--se", LOCAL_SE, *c])
    assert nothing.code == 2
    assert "no files to upload" in nothing.err
    no_se = run_cli(gb2_ds_admin.ds_put_main, [str(src), "-d", "x", *c])
    assert no_se.code == 2


def test_uploaded_copy_matches_local_checksum(
    central: CentralHandle, run_cli: CliRunner, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src", {"big.root": os.urandom(3 << 20)})
    result = run_cli(
        gb2_ds_admin.ds_put_main,
        [str(src), "-d", "big", "--se", LOCAL_SE, "--workers", "2", *_c(central)],
    )
    assert result.code == 0, result.out + result.err
    on_se = central.se_dirs[LOCAL_SE] / "belle/user/alice/big/big.root"
    assert adler32_of_file(on_se) == adler32_of_file(src / "big.root")
