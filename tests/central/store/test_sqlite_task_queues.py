"""Task queues in the store: interning, the compact restart read, slots for running limits."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from central.logic.transitions import reschedule_transitions
from central.models.job_states import JobStatus
from central.store.records import ActiveSlot, Transition
from central.store.schema import MIGRATIONS
from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner, new_job, run_with_store

S = JobStatus


def _to(job_id: int, status: JobStatus, *expect: JobStatus, site: str | None = None) -> Transition:
    return Transition(
        job_id=job_id,
        status=status,
        minor_status="",
        source="test",
        time=2.0,
        expect=expect,
        site=site,
        pilot_id="p" if site else None,
    )


def test_jobs_with_equal_requirements_share_one_task_queue(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.insert_jobs(
            [new_job(0, requirements=b"A"), new_job(1, requirements=b"B", priority=9)], 1.0
        )
        await store.insert_jobs([new_job(2, requirements=b"A", priority=2)], 1.0)
        await store.apply_transitions([_to(2, S.MATCHED, S.WAITING, site="X")])
        rows, queues = await store.waiting_jobs_compact()
        assert [(r[0], r[1]) for r in rows] == [(1, 5), (3, 2)]
        assert rows[0][2] == rows[1][2]
        # Only queues that still hold waiting jobs are returned.
        assert queues == {rows[0][2]: b"A"}

    with_store(body)


def test_running_slots_and_release_listener(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> list[Sequence[ActiveSlot]]:
        calls: list[Sequence[ActiveSlot]] = []
        store.set_release_listener(calls.append)
        await store.insert_jobs([new_job(n, job_type="User") for n in range(4)], 1.0)
        await store.apply_transitions([_to(n, S.MATCHED, S.WAITING, site="S1") for n in (1, 2, 3)])
        assert (
            sorted(await store.running_jobs_for_limits()) == [("S1", "User", "alice", "belle")] * 3
        )
        assert calls == []
        await store.apply_transitions(
            [_to(1, S.RUNNING, S.MATCHED), _to(2, S.KILLED, S.MATCHED), _to(4, S.KILLED)]
        )
        # Killed from Waiting held no slot; a refused transition releases nothing.
        await store.apply_transitions([_to(2, S.KILLED, S.MATCHED)])
        assert (
            sorted(await store.running_jobs_for_limits()) == [("S1", "User", "alice", "belle")] * 2
        )
        # Rescheduling clears the site; the slot released is still the one held at S1.
        running = await store.get_job(1)
        assert running is not None
        await store.apply_transitions(reschedule_transitions(running, 3.0, "test", "stalled"))
        # A final report through finish_attempt releases too.
        await store.apply_transitions([_to(3, S.RUNNING, S.MATCHED)])
        await store.finish_attempt(_to(3, S.DONE, S.RUNNING), [], [], [])
        assert await store.running_jobs_for_limits() == []
        return calls

    calls = with_store(body)
    slot = ("S1", "User", "alice", "belle")
    assert [list(c) for c in calls] == [[slot], [slot], [slot]]


def test_schema_2_database_gets_task_queue_ids(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    MIGRATIONS[0](conn)
    MIGRATIONS[1](conn)
    conn.execute("PRAGMA user_version = 2")
    for req, status in ((b"A", "Waiting"), (b"B", "Waiting"), (b"A", "Waiting"), (b"B", "Done")):
        conn.execute(
            "INSERT INTO jobs (spec, requirements, project, owner, owner_group, job_name, "
            "priority, job_type, status, submitted, updated) "
            "VALUES (x'00', ?, 'p', 'alice', 'g', 'n', 1, 'User', ?, 1, 1)",
            (req, status),
        )
    conn.close()

    async def body(store: SqliteStore) -> None:
        rows, queues = await store.waiting_jobs_compact()
        assert [r[0] for r in rows] == [1, 2, 3]
        assert {queues[r[2]] for r in rows} == {b"A", b"B"}
        assert rows[0][2] == rows[2][2] != rows[1][2]
        # New jobs with a known shape land in the existing queue.
        (new_id,) = await store.insert_jobs([new_job(9, requirements=b"B")], 5.0)
        rows2, _ = await store.waiting_jobs_compact()
        assert dict((r[0], r[2]) for r in rows2)[new_id] == rows[1][2]

    run_with_store(db_path, body)
