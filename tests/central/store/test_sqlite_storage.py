"""Schema 5 of the store: SE health, learned costs, suspect replicas, and data requests that
run one at a time per LFN, highest priority first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from central.store.records import (
    CHECK,
    REMOVE,
    REPLICATE,
    FileRecord,
    NewFailoverRequest,
    SECostRecord,
    SEHealthRecord,
)
from central.store.schema import MIGRATIONS
from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner, run_with_store

LFN = "/belle/user/alice/p/sub00/a.root"


def request(lfn: str, operation: str = REPLICATE, priority: int = 0) -> NewFailoverRequest:
    return NewFailoverRequest(
        job_id=0, lfn=lfn, source_se="FO", target_se="SE", operation=operation, priority=priority
    )


def test_schema_4_database_keeps_its_catalog_and_requests(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    for migration in MIGRATIONS[:4]:
        migration(conn)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("INSERT INTO files (lfn, size, adler32, job_id) VALUES (?, 3, 'abc', 7)", (LFN,))
    conn.execute("INSERT INTO replicas (file_id, se) VALUES (1, 'KEK-SE')")
    conn.execute(
        "INSERT INTO failover_requests (job_id, lfn, source_se, target_se, status, created, "
        "updated, next_try) VALUES (7, ?, 'FO', 'KEK-SE', 'Waiting', 1, 1, 1)",
        (LFN,),
    )
    conn.close()

    async def body(store: SqliteStore) -> None:
        files = await store.get_files([LFN])
        assert files[LFN].ses == ("KEK-SE",)
        assert files[LFN].suspects == {}
        [old] = await store.due_failover_requests(10.0, 0)
        assert (old.operation, old.priority, old.owner) == (REPLICATE, 0, "")
        assert await store.list_se_health() == []

    run_with_store(db_path, body)


def test_suspect_replicas_are_marked_cleared_and_cleared_by_a_new_copy(
    with_store: StoreRunner,
) -> None:
    async def body(store: SqliteStore) -> None:
        await store.add_files([FileRecord(lfn=LFN, size=3, adler32="abc", ses=("A", "B"))])
        assert await store.set_replica_suspect(LFN, "A", "adler32 mismatch")
        assert not await store.set_replica_suspect(LFN, "C", "x")
        assert (await store.get_files([LFN]))[LFN].suspects == {"A": "adler32 mismatch"}
        assert (await store.list_files("/belle/user/alice"))[0].suspects == {
            "A": "adler32 mismatch"
        }
        # Registering the copy again (re-written and verified) clears it.
        await store.add_files([FileRecord(lfn=LFN, size=3, adler32="abc", ses=("A",))])
        assert (await store.get_files([LFN]))[LFN].suspects == {}

    with_store(body)


def test_remove_file_drops_the_entry_and_its_replicas(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.add_files([FileRecord(lfn=LFN, size=3, adler32="abc", ses=("A", "B"))])
        assert await store.remove_file(LFN)
        assert await store.get_files([LFN]) == {}
        assert not await store.remove_file(LFN)
        # The LFN can be registered again afterwards, with other contents.
        await store.add_files([FileRecord(lfn=LFN, size=9, adler32="def", ses=("B",))])
        assert (await store.get_files([LFN]))[LFN].size == 9

    with_store(body)


def test_requests_on_one_lfn_run_in_order_and_priority_orders_lfns(
    with_store: StoreRunner,
) -> None:
    async def body(store: SqliteStore) -> None:
        first, second, other, urgent = await store.add_failover_requests(
            [
                request("/a", REPLICATE),
                request("/a", REMOVE, priority=9),
                request("/b", CHECK),
                request("/c", REMOVE, priority=5),
            ],
            now=1.0,
        )
        due = await store.due_failover_requests(2.0, 0)
        # The removal of /a waits for the replication of /a, whatever its priority.
        assert [r.request_id for r in due] == [urgent, first, other]
        await store.update_failover_request(
            first, status="Done", attempts=1, last_error="", next_try=2.0, now=2.0
        )
        due = await store.due_failover_requests(3.0, 0)
        assert [r.request_id for r in due] == [second, urgent, other]
        # A request waiting for its retry still holds back the later ones on its LFN.
        await store.update_failover_request(
            second, status="Waiting", attempts=1, last_error="x", next_try=100.0, now=3.0
        )
        assert [r.request_id for r in await store.due_failover_requests(4.0, 0)] == [
            urgent,
            other,
        ]
        assert [r.request_id for r in await store.list_failover_requests(lfn="/a")] == [
            first,
            second,
        ]
        found = await store.list_failover_requests(request_ids=[urgent, other])
        assert [(r.request_id, r.operation, r.priority) for r in found] == [
            (other, CHECK, 0),
            (urgent, REMOVE, 5),
        ]

    with_store(body)


def test_unknown_operation_is_refused(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        with pytest.raises(ValueError, match="unknown data request operation 'copy'"):
            await store.add_failover_requests([request("/a", "copy")], now=1.0)
        assert await store.list_failover_requests() == []

    with_store(body)


def test_se_health_and_costs_round_trip(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        health = SEHealthRecord(
            se="KEK-SE",
            available=False,
            consecutive_failures=3,
            last_probe=10.0,
            last_ok=4.0,
            last_error="upload: refused",
            total_bytes=100,
            free_bytes=2,
            probe_seconds=0.5,
        )
        await store.put_se_health(health)
        fresh = SEHealthRecord(se="DESY-SE", last_probe=11.0)
        await store.put_se_health(fresh)
        assert await store.list_se_health() == [fresh, health]
        costs = [
            SECostRecord(site="S", se="KEK-SE", cost=12.5, samples=3, failures=1, updated=5.0),
            SECostRecord(site="S", se="DESY-SE", cost=2.0, samples=1, failures=0, updated=6.0),
        ]
        await store.put_se_costs(costs)
        await store.put_se_costs(
            [SECostRecord(site="S", se="KEK-SE", cost=8.0, samples=4, failures=1, updated=7.0)]
        )
        assert [(c.se, c.cost, c.samples) for c in await store.list_se_costs()] == [
            ("DESY-SE", 2.0, 1),
            ("KEK-SE", 8.0, 4),
        ]

    with_store(body)
