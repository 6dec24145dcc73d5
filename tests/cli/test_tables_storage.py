"""Formatting of storage answers: replica order with reasons, SE health and refusals."""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.table import Table

from gridpilot.cli.tables import (
    file_to_dict,
    replicas_heading,
    replicas_table,
    se_occupancy,
    se_table,
    se_to_dict,
)
from gridpilot.v1 import data_pb2


def _render(table: Table) -> str:
    out = io.StringIO()
    Console(file=out, width=200, highlight=False).print(table)
    return out.getvalue()


def _cells(text: str, first: str) -> list[str]:
    """The cells of the row whose first cell is `first`."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines()]
    return next(row for row in rows if row and row[0] == first)


def _file() -> data_pb2.FileReplicas:
    return data_pb2.FileReplicas(
        lfn="/belle/user/alice/ds/a.root",
        size=2_000_000,
        adler32="0a0b0c0d",
        replicas=[
            data_pb2.Replica(se="KEK-SE", url="file:///kek/a", rank_reason="local SE", cost=-1),
            data_pb2.Replica(
                se="DESY-SE", url="file:///desy/a", rank_reason="distance 10", cost=10
            ),
        ],
        skipped=[
            data_pb2.Replica(
                se="OFF-SE", url="file:///off/a", rank_reason="reads disabled by an administrator"
            )
        ],
    )


def test_file_json_has_order_reasons_costs_and_skipped() -> None:
    entry = json.loads(json.dumps(file_to_dict(_file())))
    assert [(r["se"], r["rank_reason"], r["cost"]) for r in entry["replicas"]] == [
        ("KEK-SE", "local SE", None),
        ("DESY-SE", "distance 10", 10.0),
    ]
    assert entry["skipped"] == [
        {
            "se": "OFF-SE",
            "url": "file:///off/a",
            "rank_reason": "reads disabled by an administrator",
            "cost": 0.0,
        }
    ]


def test_replicas_table_ranks_then_skipped() -> None:
    assert replicas_heading(_file()) == "/belle/user/alice/ds/a.root  (2.0 MB, adler32 0a0b0c0d)"
    text = _render(replicas_table(_file()))
    assert _cells(text, "1") == ["1", "KEK-SE", "-", "local SE"]
    assert _cells(text, "2") == ["2", "DESY-SE", "10", "distance 10"]
    assert _cells(text, "skipped") == [
        "skipped",
        "OFF-SE",
        "-",
        "reads disabled by an administrator",
    ]


def _se(name: str, **kw: object) -> data_pb2.StorageElement:
    base: dict[str, object] = {
        "site": "KEK",
        "protocol": "davs",
        "url": f"davs://{name.lower()}/belle",
        "read_allowed": True,
        "write_allowed": True,
        "readable": True,
        "writable": True,
    }
    return data_pb2.StorageElement(name=name, **{**base, **kw})  # type: ignore[arg-type]


def test_se_table_says_why_not_in_a_word() -> None:
    full = _se(
        "FULL-SE",
        writable=False,
        write_refusal="full: 97% used (no new writes above 95%)",
        health=data_pb2.StorageElementHealth(
            available=True,
            last_probe_unix=1_700_000_000.0,
            total_bytes=1_000_000_000,
            free_bytes=30_000_000,
        ),
    )
    never = _se("NEW-SE", read_allowed=False, readable=False, read_refusal="reads disabled")
    unreported = _se(
        "NOSPACE-SE",
        health=data_pb2.StorageElementHealth(
            available=True, last_probe_unix=1_700_000_000.0, total_bytes=-1, free_bytes=-1
        ),
    )
    text = _render(se_table([full, never, unreported]))
    assert _cells(text, "FULL-SE")[3:] == [
        "yes",
        "no (full)",
        "yes",
        "2023-11-14 22:13:20",
        "0",
        "970.0 MB / 1.0 GB (97%)",
    ]
    assert _cells(text, "NEW-SE")[3:] == ["no (disabled)", "yes", "-", "never", "-", "-"]
    assert se_occupancy(unreported) == "-"

    assert se_to_dict(never)["health"] is None
    as_json = json.loads(json.dumps(se_to_dict(full)))
    assert as_json["writable"] is False
    assert as_json["write_refusal"].startswith("full: ")
    assert as_json["health"]["free_bytes"] == 30_000_000
