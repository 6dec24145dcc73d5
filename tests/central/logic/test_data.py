from __future__ import annotations

from pathlib import Path

from central.logic.replica_ranking import rank_file
from central.logic.storage_elements import StorageElements
from central.store.records import FileRecord, StorageElementRecord
from tests.support.central_process import SITE
from tests.support.inprocess import make_config


def _ses(*records: tuple[str, str, bool]) -> StorageElements:
    return StorageElements(
        StorageElementRecord(
            name=name, site=site, url=f"file:///se/{name}", read_allowed=read, write_allowed=True
        )
        for name, site, read in records
    )


def test_rank_replicas_order_and_reasons(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        {
            "sites": [{"name": SITE, "local_ses": ["A"]}, {"name": "OTHER"}],
            "storage_elements": [
                {"name": n, "site": "OTHER", "url": f"file:///se/{n}"} for n in "ABCDE"
            ],
            "distances": {SITE: {"C": 7.5, "D": 2}},
            "failover": {"ses": []},
        },
    )
    ses = _ses(
        ("A", "OTHER", True),
        ("B", SITE, True),
        ("C", "OTHER", True),
        ("D", "OTHER", True),
        ("E", "OTHER", False),
    )
    file = FileRecord(lfn="/x/f", size=1, adler32="1", ses=("E", "C", "X", "D", "B", "A"))
    ranked = rank_file(file, SITE, config, ses).replicas
    assert [(r.se, r.rank_reason) for r in ranked] == [
        ("B", "local SE"),
        ("A", "local SE"),
        ("D", "distance 2"),
        ("C", "distance 7.5"),
    ]
    assert ranked[0].url == "file:///se/B/x/f"
    plain = rank_file(file, "", config, ses).replicas
    assert [r.se for r in plain] == ["C", "D", "B", "A"]
    assert {r.rank_reason for r in plain} == {"catalog order"}
