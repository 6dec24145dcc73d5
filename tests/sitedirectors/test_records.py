"""ReferenceRecords: one small JSON record per pilot reference, kept across restarts."""

from __future__ import annotations

from pathlib import Path

import msgspec

from sitedirectors.records import ReferenceRecords
from sitedirectors.remote import LocalFiles


class Record(msgspec.Struct, frozen=True, kw_only=True):
    pilot_id: str
    cancelled: bool = False


def test_write_read_remove(tmp_path: Path) -> None:
    records = ReferenceRecords(LocalFiles(), str(tmp_path / "refs"), Record)
    assert records.read("123.0") is None
    records.write("123.0", Record(pilot_id="p-1"))
    records.write("123.0", Record(pilot_id="p-1", cancelled=True))
    assert records.read("123.0") == Record(pilot_id="p-1", cancelled=True)
    assert (tmp_path / "refs").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "refs" / "123.0").stat().st_mode & 0o777 == 0o600
    records.remove("123.0")
    assert records.read("123.0") is None
    records.remove("123.0")  # already gone: not an error


def test_a_record_that_does_not_decode_is_none(tmp_path: Path) -> None:
    records = ReferenceRecords(LocalFiles(), str(tmp_path), Record)
    (tmp_path / "bad").write_text('{"pilot_id": 7}')
    (tmp_path / "torn").write_text('{"pilot_id": "p-')
    assert records.read("bad") is None
    assert records.read("torn") is None
