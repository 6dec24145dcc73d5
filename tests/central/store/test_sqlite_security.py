"""Security state in the SQLite store: revocations, spent registration tokens, bans, the
migration from schema 1, and the job/pilot scopes used for authorization."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from central.models.pilot_states import PilotState
from central.store.records import (
    BanRecord,
    JobFilter,
    JobScope,
    PilotFilter,
    PilotRecord,
    RevocationRecord,
)
from central.store.schema import MIGRATIONS, SCHEMA_VERSION
from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner, new_job, run_with_store


def test_revocations_persist_and_move_to_the_later_time(db_path: Path) -> None:
    async def write(store: SqliteStore) -> None:
        first = await store.add_revocation(
            RevocationRecord(kind="user", value="alice", reason="lost laptop", created=10.0)
        )
        assert first.created == 10.0
        again = await store.add_revocation(
            RevocationRecord(kind="user", value="alice", reason="again", created=20.0)
        )
        assert (again.created, again.reason) == (20.0, "again")
        # An older duplicate never moves the time back.
        older = await store.add_revocation(
            RevocationRecord(kind="user", value="alice", reason="late", created=5.0)
        )
        assert older.created == 20.0
        await store.add_revocation(
            RevocationRecord(kind="jti", value="abc", reason="", created=15.0)
        )

    run_with_store(db_path, write)

    async def read(store: SqliteStore) -> list[RevocationRecord]:
        return await store.list_revocations()

    found = run_with_store(db_path, read)
    assert [(r.kind, r.value, r.created) for r in found] == [
        ("jti", "abc", 15.0),
        ("user", "alice", 20.0),
    ]


def test_registration_tokens_are_single_use_until_pruned(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        assert await store.consume_registration("j1", expires=100.0)
        assert not await store.consume_registration("j1", expires=100.0)
        assert await store.consume_registration("j2", expires=200.0)
        assert await store.used_registrations(now=150.0) == {"j2": 200.0}
        assert await store.prune_registrations(now=150.0) == 1
        assert await store.used_registrations(now=0.0) == {"j2": 200.0}

    with_store(body)


def test_bans_are_upserted_per_kind(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.set_ban("site", BanRecord(name="S1", banned=True, reason="x", updated=1.0))
        await store.set_ban("site", BanRecord(name="S1", banned=False, reason="ok", updated=2.0))
        await store.set_ban("user", BanRecord(name="bob", banned=True, reason="", updated=3.0))
        sites = await store.list_bans("site")
        assert [(b.name, b.banned, b.reason) for b in sites] == [("S1", False, "ok")]
        assert [b.name for b in await store.list_bans("user")] == ["bob"]
        with pytest.raises(ValueError, match="unknown ban kind"):
            await store.list_bans("pilot")

    with_store(body)


def test_job_scope_selects_owner_group_or_type(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.insert_jobs(
            [
                new_job(1, owner="alice", group="g1"),
                new_job(2, owner="bob", group="g1"),
                new_job(3, owner="carol", group="g2", job_type="Production"),
                new_job(4, owner="dave", group="g2"),
            ],
            now=1.0,
        )

        async def ids(scope: JobScope) -> list[int]:
            return [j.job_id for j in await store.list_jobs(JobFilter(scope=scope))]

        assert await ids(JobScope(owner="alice")) == [1]
        assert await ids(JobScope(owner="alice", group="g1")) == [1, 2]
        assert await ids(JobScope(owner="alice", job_type="Production")) == [1, 3]
        assert await ids(JobScope(owner="nobody", group="g2", job_type="Production")) == [3, 4]
        counts = await store.summarize_projects(JobFilter(scope=JobScope(owner="bob")))
        assert [c.owner for c in counts] == ["bob"]

    with_store(body)


def test_pilot_filter_by_several_sites(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.insert_pilots(
            [
                PilotRecord(
                    pilot_id=f"p{n}",
                    reference="",
                    site=site,
                    ce="ce",
                    queue="q",
                    backend="local",
                    director="d",
                    state=PilotState.SUBMITTED,
                    submitted=float(n),
                )
                for n, site in enumerate(["A", "B", "C"])
            ]
        )
        found = await store.list_pilots(PilotFilter(sites=("A", "C")))
        assert [p.pilot_id for p in found] == ["p0", "p2"]

    with_store(body)


def test_schema_1_database_is_migrated_with_its_jobs(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO jobs (spec, requirements, project, owner, owner_group, job_name, priority, "
        "job_type, status, submitted, updated) "
        "VALUES (x'00', x'00', 'p', 'alice', 'g', 'n', 1, 'User', 'Waiting', 1, 1)"
    )
    conn.close()

    async def body(store: SqliteStore) -> None:
        job = await store.get_job(1)
        assert job is not None
        assert job.owner == "alice"
        assert await store.consume_registration("j", 10.0)
        assert await store.list_revocations() == []

    run_with_store(db_path, body)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    finally:
        conn.close()
