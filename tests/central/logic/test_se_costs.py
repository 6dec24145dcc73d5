"""Learning each site's cost of reading from each SE, and the replica order it leads to."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import StorageSection
from central.logic.replica_ranking import rank_file
from central.logic.se_costs import UNKNOWN_FAILURE_COST, Transfer, learn, record_transfers
from central.logic.storage_elements import StorageElements
from central.store.records import FileRecord, SECostRecord, SEHealthRecord, StorageElementRecord
from tests.central.logic.helpers import world
from tests.support.central_process import LOCAL_SE, SITE
from tests.support.inprocess import make_config, run

SETTINGS = StorageSection(cost_alpha=0.5, cost_min_bytes=1_000_000, failure_cost_factor=4.0)
GB = 1_000_000_000


def transfer(seconds: float, size: int = GB, ok: bool = True, se: str = "SE") -> Transfer:
    return Transfer(se=se, direction="read", bytes=size, seconds=seconds, ok=ok)


def test_first_measurement_moves_the_configured_distance() -> None:
    first = learn(None, 10.0, transfer(30.0), SETTINGS, site="S", now=1.0)
    assert first is not None
    assert (first.cost, first.samples, first.failures) == (20.0, 1, 0)
    second = learn(first, 10.0, transfer(20.0), SETTINGS, site="S", now=2.0)
    assert second is not None
    assert (second.cost, second.samples) == (20.0, 2)


def test_without_a_distance_the_first_measurement_is_the_cost() -> None:
    first = learn(None, None, transfer(5.0, size=GB // 2), SETTINGS, site="S", now=1.0)
    assert first is not None
    assert first.cost == 10.0


def test_small_transfers_teach_nothing_and_failures_cost() -> None:
    assert learn(None, 10.0, transfer(0.01, size=1000), SETTINGS, site="S", now=1.0) is None
    failed = learn(None, 10.0, transfer(1.0, ok=False), SETTINGS, site="S", now=1.0)
    assert failed is not None
    assert (failed.cost, failed.failures, failed.samples) == (25.0, 1, 0)
    unknown = learn(None, None, transfer(1.0, ok=False), SETTINGS, site="S", now=1.0)
    assert unknown is not None
    assert unknown.cost == 4 * UNKNOWN_FAILURE_COST


def _ses(*names: str) -> StorageElements:
    return StorageElements(
        [
            StorageElementRecord(
                name=n, site="OTHER", url=f"file:///se/{n}", read_allowed=True, write_allowed=True
            )
            for n in names
        ],
        health=[SEHealthRecord(se="DOWN", available=False, consecutive_failures=3, last_error="x")],
    )


def test_learned_costs_reorder_replicas_and_bad_or_suspect_copies_go_last(
    tmp_path: Path,
) -> None:
    config = make_config(
        tmp_path,
        {
            "sites": [{"name": SITE}, {"name": "OTHER"}],
            "storage_elements": [
                {"name": n, "site": "OTHER", "url": f"file:///se/{n}"}
                for n in ("NEAR", "FAR", "BAD", "DOWN", "NEW")
            ],
            "distances": {SITE: {"NEAR": 5, "FAR": 50}},
            "failover": {"ses": []},
        },
    )
    ses = _ses("NEAR", "FAR", "BAD", "DOWN", "NEW")
    file = FileRecord(
        lfn="/x/f",
        size=1,
        adler32="1",
        ses=("NEAR", "FAR", "BAD", "DOWN", "NEW"),
        suspects={"BAD": "adler32 mismatch (reported by job 3)"},
    )
    ranked = rank_file(file, SITE, config, ses)
    assert [(r.se, r.rank_reason) for r in ranked.replicas] == [
        ("NEAR", "distance 5"),
        ("FAR", "distance 50"),
        ("NEW", "no distance"),
        ("BAD", "suspect: adler32 mismatch (reported by job 3)"),
    ]
    assert [(r.se, r.rank_reason) for r in ranked.skipped] == [
        ("DOWN", "unavailable after 3 failed probes (x)")
    ]
    # NEAR turned out slow from this site, FAR fast: the order follows what was measured.
    ses.set_costs(
        [
            SECostRecord(site=SITE, se="NEAR", cost=80.0, samples=4, failures=1, updated=1.0),
            SECostRecord(site=SITE, se="FAR", cost=3.0, samples=2, failures=0, updated=1.0),
        ]
    )
    ranked = rank_file(file, SITE, config, ses)
    assert [(r.se, r.rank_reason, r.cost) for r in ranked.replicas[:2]] == [
        ("FAR", "cost 3 s/GB (2 transfers)", 3.0),
        ("NEAR", "cost 80 s/GB (4 transfers, 1 failed)", 80.0),
    ]


@pytest.mark.parametrize("direction", ["read", "write"])
def test_a_jobs_transfers_update_its_sites_costs_in_store_and_memory(
    tmp_path: Path, direction: str
) -> None:
    overrides = {"distances": {SITE: {LOCAL_SE: 10}}}

    async def body() -> None:
        async with world(tmp_path, overrides) as w:
            transfers = [
                Transfer(se=LOCAL_SE, direction=direction, bytes=GB, seconds=40.0, ok=True),
                Transfer(se=LOCAL_SE, direction="sideways", bytes=GB, seconds=1.0, ok=True),
                Transfer(se="NO-SUCH-SE", direction="read", bytes=GB, seconds=1.0, ok=True),
            ]
            changed = await record_transfers(
                w.store, w.ses, w.config, site=SITE, transfers=transfers, now=w.clock()
            )
            assert [(c.se, round(c.cost, 6), c.samples) for c in changed] == [(LOCAL_SE, 19.0, 1)]
            assert await w.store.list_se_costs() == changed
            learned = w.ses.learned_cost(SITE, LOCAL_SE)
            assert learned is not None
            assert learned.samples == 1

    run(body())
