from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.checksum import adler32_of_bytes
from gridpilot.v1 import data_pb2
from wrapper.data_access import DataAccessLog
from wrapper.steps.input_data import (
    StageInError,
    VerificationError,
    candidates,
    local_names,
    stage_in_file,
    verify_copy,
)

LFN = "/belle/data/run1/file1.root"
DATA = b"input events " * 500


def make_se(tmp_path: Path, name: str, content: bytes | None) -> str:
    root = tmp_path / name
    root.mkdir()
    if content is not None:
        target = root / LFN.lstrip("/")
        target.parent.mkdir(parents=True)
        target.write_bytes(content)
    return f"file://{root}"


def replicas(*ses: str) -> data_pb2.FileReplicas:
    return data_pb2.FileReplicas(
        lfn=LFN,
        size=len(DATA),
        adler32=adler32_of_bytes(DATA),
        replicas=[data_pb2.Replica(se=se, url=f"file:///nowhere/{se}{LFN}") for se in ses],
    )


def test_candidates_keep_order_and_fall_back_to_replica_url() -> None:
    file = replicas("A", "B", "C")
    file.replicas[2].url = "bogus://x"
    found, skipped = candidates(file, {"B": "file:///b", "A": "file:///a"})
    assert [(c.se, c.base_url) for c in found] == [("A", "file:///a"), ("B", "file:///b")]
    assert skipped == ["C: unknown storage element"]
    found, _ = candidates(replicas("D"), {})
    assert [c.base_url for c in found] == ["file:///nowhere/D"]


def test_first_good_replica_used(tmp_path: Path) -> None:
    urls = {"A": make_se(tmp_path, "a", DATA), "B": make_se(tmp_path, "b", DATA)}
    dest = tmp_path / "work" / "file1.root"
    assert stage_in_file(replicas("A", "B"), dest, urls) == "A"
    assert dest.read_bytes() == DATA


def test_corrupted_and_missing_replicas_are_skipped(tmp_path: Path) -> None:
    corrupted = bytearray(DATA)
    corrupted[10] ^= 0xFF
    urls = {
        "MISSING": make_se(tmp_path, "missing", None),
        "CORRUPT": make_se(tmp_path, "corrupt", bytes(corrupted)),
        "SHORT": make_se(tmp_path, "short", DATA[:-1]),
        "GOOD": make_se(tmp_path, "good", DATA),
    }
    dest = tmp_path / "work" / "file1.root"
    access = DataAccessLog()
    file = replicas("MISSING", "CORRUPT", "SHORT", "GOOD")
    assert stage_in_file(file, dest, urls, access=access) == "GOOD"
    assert dest.read_bytes() == DATA
    # Every download is timed for central; the copies that did not match are suspect.
    assert [(t.se, t.direction, t.ok) for t in access.transfers] == [
        ("MISSING", "read", False),
        ("CORRUPT", "read", True),
        ("SHORT", "read", True),
        ("GOOD", "read", True),
    ]
    assert all(t.bytes == len(DATA) and t.seconds >= 0 for t in access.transfers)
    assert "not found" in access.transfers[0].error
    assert [(r.lfn, r.se) for r in access.suspects] == [(file.lfn, "CORRUPT"), (file.lfn, "SHORT")]
    assert access.suspects[0].reason.startswith("adler32 ")
    assert access.suspects[1].reason.startswith("size ")
    request = access.request(job_id=7)
    assert request is not None
    assert request.job_id == 7
    assert len(request.transfers) == 4
    assert DataAccessLog().request(job_id=7) is None


def test_no_usable_replica(tmp_path: Path) -> None:
    down = tmp_path / "down"
    down.write_text("SE root replaced by a file")
    urls = {"DOWN": f"file://{down}", "CORRUPT": make_se(tmp_path, "c", b"junk")}
    dest = tmp_path / "work" / "file1.root"
    file = replicas("DOWN", "CORRUPT", "UNKNOWN")
    file.replicas[2].url = ""
    with pytest.raises(StageInError) as info:
        stage_in_file(file, dest, urls)
    message = str(info.value)
    assert "UNKNOWN: unknown storage element" in message
    assert "DOWN:" in message
    assert "CORRUPT: size" in message
    assert not dest.exists()
    with pytest.raises(StageInError, match="no replicas in the catalog"):
        stage_in_file(replicas(), dest, urls)


def test_verify_copy(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(DATA)
    verify_copy(path, len(DATA), adler32_of_bytes(DATA).upper())
    verify_copy(path, 0, "")
    with pytest.raises(VerificationError, match="size"):
        verify_copy(path, len(DATA) + 1, "")
    with pytest.raises(VerificationError, match="adler32"):
        verify_copy(path, len(DATA), "00000001")


def test_local_names() -> None:
    assert local_names(["/a/x.root", "/b/y.root"]) == ["x.root", "y.root"]
    with pytest.raises(ValueError, match="share the file name"):
        local_names(["/a/x.root", "/b/x.root"])
