"""gb2_ds_get's engine against real file:// SEs: replica fallback, verification, skipping."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes
from gridpilot.cli.ds_download import (
    FileToGet,
    Outcome,
    dataset_dir,
    get_all,
    local_path_for,
)

LPN = "/belle/user/alice/ds1"


def _put(se_root: Path, lfn: str, data: bytes) -> None:
    path = se_root / lfn.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _item(lfn: str, data: bytes, replicas: list[tuple[str, Path]], dest: Path) -> FileToGet:
    return FileToGet(
        lfn=lfn,
        size=len(data),
        adler32=adler32_of_bytes(data),
        replicas=tuple((se, f"file://{root}{lfn}") for se, root in replicas),
        local=local_path_for(lfn, LPN, dest),
    )


def test_local_paths_stay_under_the_dataset_dir(tmp_path: Path) -> None:
    assert local_path_for(f"{LPN}/sub00/a.root", LPN, tmp_path) == tmp_path / "ds1/sub00/a.root"
    assert dataset_dir(LPN + "/", tmp_path) == tmp_path / "ds1"
    # An LFN outside the dataset lands by its name only.
    assert local_path_for("/other/b.root", LPN, tmp_path) == tmp_path / "ds1/b.root"
    with pytest.raises(ValueError, match="unsafe"):
        local_path_for(f"{LPN}/../../../etc/passwd", LPN, tmp_path)


def test_falls_back_to_next_replica_then_skips_on_rerun(tmp_path: Path) -> None:
    near, far = tmp_path / "near-se", tmp_path / "far-se"
    near.mkdir()
    lfn_a, lfn_b = f"{LPN}/sub00/a.root", f"{LPN}/sub00/b.root"
    data_a, data_b = b"a" * 5000, b"bb" * 3000
    _put(far, lfn_a, data_a)  # missing on the near SE: must come from the far one
    _put(near, lfn_b, data_b)
    _put(far, lfn_b, data_b)
    dest = tmp_path / "dl"
    se_urls = {"NEAR": f"file://{near}", "FAR": f"file://{far}"}
    items = [
        _item(lfn_a, data_a, [("NEAR", near), ("FAR", far)], dest),
        _item(lfn_b, data_b, [("NEAR", near), ("FAR", far)], dest),
    ]
    seen: list[str] = []
    results = get_all(items, se_urls, workers=2, on_done=lambda r: seen.append(r.lfn))
    assert [r.outcome for r in results] == [Outcome.DOWNLOADED, Outcome.DOWNLOADED]
    assert [r.se for r in results] == ["FAR", "NEAR"]
    assert "NEAR" in results[0].errors[0]
    assert sorted(seen) == [lfn_a, lfn_b]
    assert (dest / "ds1/sub00/a.root").read_bytes() == data_a

    again = get_all(items, se_urls, workers=2)
    assert [r.outcome for r in again] == [Outcome.SKIPPED, Outcome.SKIPPED]


def test_corrupt_copy_is_not_kept(tmp_path: Path) -> None:
    se = tmp_path / "se"
    lfn = f"{LPN}/c.root"
    good = b"good data" * 100
    _put(se, lfn, b"X" + good[1:])  # same size, different adler32
    dest = tmp_path / "dl"
    item = _item(lfn, good, [("SE", se)], dest)
    [result] = get_all([item], {"SE": f"file://{se}"})
    assert result.outcome is Outcome.FAILED
    assert "adler32" in result.errors[0]
    assert not item.local.exists()


def test_stale_local_file_is_replaced(tmp_path: Path) -> None:
    se = tmp_path / "se"
    lfn = f"{LPN}/d.root"
    data = b"fresh" * 10
    _put(se, lfn, data)
    item = _item(lfn, data, [("SE", se)], tmp_path / "dl")
    item.local.parent.mkdir(parents=True)
    item.local.write_bytes(b"old")
    [result] = get_all([item], {})  # SE unknown by name: base URL comes from the replica URL
    assert result.outcome is Outcome.DOWNLOADED
    assert item.local.read_bytes() == data


def test_no_replica_fails_cleanly(tmp_path: Path) -> None:
    item = _item(f"{LPN}/e.root", b"e", [], tmp_path / "dl")
    [result] = get_all([item], {})
    assert result.outcome is Outcome.FAILED
    assert result.errors == ["no readable replica"]
