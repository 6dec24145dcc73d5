"""SqliteStore job methods on a real database file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from central.models.job_states import JobStatus
from central.store.interface import Store
from central.store.records import (
    HeartbeatRecord,
    JobFilter,
    OutputRecord,
    StatusCountRecord,
    Transition,
)
from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner, new_job

S = JobStatus


def test_sqlite_store_satisfies_the_store_protocol(db_path: Path) -> None:
    # mypy checks this assignment against the Protocol's signatures.
    store: Store = SqliteStore(db_path)
    assert isinstance(store, SqliteStore)


def test_insert_jobs_returns_ids_in_order_and_stores_waiting(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        assert await store.insert_jobs([], now=1.0) == []
        ids = await store.insert_jobs([new_job(i, priority=i) for i in range(5)], now=100.0)
        assert ids == sorted(ids)
        assert len(set(ids)) == 5
        more = await store.insert_jobs([new_job(9)], now=101.0)
        assert more[0] > ids[-1]
        for i, job_id in enumerate(ids):
            job = await store.get_job(job_id)
            assert job is not None
            assert job.job_id == job_id
            assert job.status is S.WAITING
            assert job.spec == f"spec-{i}".encode()
            assert job.requirements == b"req-a"
            assert (job.project, job.owner, job.group) == ("proj", "alice", "belle")
            assert (job.job_name, job.priority, job.job_type) == (f"job-{i}", i, "User")
            assert (job.attempt, job.reschedule_count) == (1, 0)
            assert (job.submitted, job.updated, job.last_heartbeat) == (100.0, 100.0, None)
            assert (job.site, job.pilot_id, job.output_sandbox) == ("", "", "")
            assert job.kill_requested is False
            history = await store.job_history(job_id)
            assert [(h.status, h.time) for h in history] == [(S.WAITING, 100.0)]
        assert await store.get_job(10_000) is None

    with_store(body)


def test_insert_jobs_is_all_or_nothing(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        # A value SQLite cannot bind fails the batch half-way through.
        bad = [new_job(0), new_job(1), new_job(2, priority={"not": "bindable"})]
        with pytest.raises(sqlite3.Error):
            await store.insert_jobs(bad, now=1.0)
        assert await store.list_jobs(JobFilter()) == []
        ids = await store.insert_jobs([new_job(3)], now=2.0)
        assert len(ids) == 1
        assert len(await store.job_history(ids[0])) == 1

    with_store(body)


def test_list_jobs_filters_and_hides_deleted(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        a = await store.insert_jobs([new_job(i, project="pa") for i in range(3)], now=1.0)
        b = await store.insert_jobs([new_job(i, project="pb", owner="bob") for i in range(2)], 2.0)
        await store.apply_transitions(
            [
                Transition(
                    job_id=a[0],
                    status=S.MATCHED,
                    minor_status="",
                    source="t",
                    time=3.0,
                    site="SITE-X",
                    pilot_id="p1",
                ),
                Transition(job_id=a[1], status=S.DELETED, minor_status="", source="t", time=3.0),
            ]
        )

        async def ids(where: JobFilter, limit: int = 0) -> list[int]:
            return [j.job_id for j in await store.list_jobs(where, limit)]

        assert await ids(JobFilter()) == [a[0], a[2], *b]
        assert await ids(JobFilter(project="pa")) == [a[0], a[2]]
        assert await ids(JobFilter(owner="bob")) == b
        assert await ids(JobFilter(site="SITE-X")) == [a[0]]
        assert await ids(JobFilter(job_ids=(a[1], a[2], b[1]))) == [a[2], b[1]]
        assert await ids(JobFilter(statuses=(S.WAITING,))) == [a[2], *b]
        assert await ids(JobFilter(statuses=(S.DELETED,))) == [a[1]]
        assert await ids(JobFilter(statuses=(S.DELETED, S.MATCHED))) == [a[0], a[1]]
        assert await ids(JobFilter(project="pa", statuses=(S.WAITING,))) == [a[2]]
        assert await ids(JobFilter(), limit=2) == [a[0], a[2]]
        assert await ids(JobFilter(project="nope")) == []

    with_store(body)


def test_list_jobs_accepts_more_ids_than_sqlite_variables(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        ids = await store.insert_jobs([new_job(i) for i in range(40_000)], now=1.0)
        wanted = (*ids[::2], 10_000_000)
        found = await store.list_jobs(JobFilter(job_ids=wanted))
        assert [j.job_id for j in found] == ids[::2]

    with_store(body)


def test_waiting_jobs_lists_only_waiting(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        ids = await store.insert_jobs(
            [
                new_job(i, priority=i, owner=f"u{i}", requirements=f"r{i}".encode())
                for i in range(3)
            ],
            now=1.0,
        )
        await store.apply_transitions(
            [Transition(job_id=ids[1], status=S.MATCHED, minor_status="", source="t", time=2.0)]
        )
        waiting = await store.waiting_jobs()
        assert [(w.job_id, w.priority, w.owner, w.group, w.requirements) for w in waiting] == [
            (ids[0], 0, "u0", "belle", b"r0"),
            (ids[2], 2, "u2", "belle", b"r2"),
        ]

    with_store(body)


def test_summarize_projects_counts_per_project_owner_status(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        a = await store.insert_jobs([new_job(i, project="pa") for i in range(3)], now=10.0)
        await store.insert_jobs([new_job(0, project="pa", owner="bob")], now=5.0)
        await store.insert_jobs([new_job(0, project="pb")], now=7.0)
        await store.apply_transitions(
            [
                Transition(job_id=a[0], status=S.MATCHED, minor_status="", source="t", time=11.0),
                Transition(job_id=a[1], status=S.DELETED, minor_status="", source="t", time=11.0),
            ]
        )
        summary = await store.summarize_projects(JobFilter())
        assert summary == [
            StatusCountRecord(
                project="pa", owner="alice", status=S.MATCHED, count=1, first_submitted=10.0
            ),
            StatusCountRecord(
                project="pa", owner="alice", status=S.WAITING, count=1, first_submitted=10.0
            ),
            StatusCountRecord(
                project="pa", owner="bob", status=S.WAITING, count=1, first_submitted=5.0
            ),
            StatusCountRecord(
                project="pb", owner="alice", status=S.WAITING, count=1, first_submitted=7.0
            ),
        ]
        only_bob = await store.summarize_projects(JobFilter(owner="bob"))
        assert [(r.project, r.count) for r in only_bob] == [("pa", 1)]

    with_store(body)


def _beat(job_id: int, attempt: int, time: float, cpu: float = 1.0) -> HeartbeatRecord:
    return HeartbeatRecord(
        job_id=job_id,
        attempt=attempt,
        time=time,
        cpu_seconds=cpu,
        wall_seconds=2.0,
        rss_bytes=3,
        disk_free_bytes=4,
        load_average=0.5,
        stdout_tail=("line 1", 'line 2 with = and "quotes"'),
    )


def test_record_heartbeats_keeps_latest_of_current_attempt(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        await store.apply_transitions(
            [Transition(job_id=job_id, status=S.MATCHED, minor_status="", source="t", time=2.0)]
        )
        assert await store.last_heartbeat(job_id) is None
        await store.record_heartbeats([_beat(job_id, 1, 10.0, cpu=1.0)])
        assert await store.last_heartbeat(job_id) == _beat(job_id, 1, 10.0, cpu=1.0)
        job = await store.get_job(job_id)
        assert job is not None
        assert job.last_heartbeat == 10.0
        assert job.updated == 2.0
        # An older beat arriving late replaces neither the record nor the time.
        await store.record_heartbeats([_beat(job_id, 1, 8.0, cpu=0.5)])
        beat = await store.last_heartbeat(job_id)
        assert beat is not None
        assert beat.time == 10.0
        assert beat.cpu_seconds == 1.0
        job = await store.get_job(job_id)
        assert job is not None
        assert job.last_heartbeat == 10.0
        # A beat for another attempt or an unknown job is ignored.
        await store.record_heartbeats([_beat(job_id, 2, 20.0), _beat(999_999, 1, 20.0)])
        beat = await store.last_heartbeat(job_id)
        assert beat is not None
        assert (beat.attempt, beat.time) == (1, 10.0)
        assert await store.last_heartbeat(999_999) is None
        # Several beats in one batch: the newest wins.
        await store.record_heartbeats([_beat(job_id, 1, 12.0), _beat(job_id, 1, 11.0)])
        job = await store.get_job(job_id)
        assert job is not None
        assert job.last_heartbeat == 12.0

    with_store(body)


def test_heartbeats_of_an_old_attempt_are_ignored_after_reschedule(
    with_store: StoreRunner,
) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        await store.apply_transitions(
            [Transition(job_id=job_id, status=S.MATCHED, minor_status="", source="t", time=2.0)]
        )
        await store.record_heartbeats([_beat(job_id, 1, 5.0)])
        await store.apply_transitions(
            [
                Transition(
                    job_id=job_id, status=S.RESCHEDULED, minor_status="", source="t", time=6.0
                ),
                Transition(
                    job_id=job_id,
                    status=S.WAITING,
                    minor_status="",
                    source="t",
                    time=6.0,
                    attempt=2,
                    reschedule_count=1,
                    reset_heartbeat=True,
                ),
            ]
        )
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.attempt, job.last_heartbeat) == (2, None)
        await store.record_heartbeats([_beat(job_id, 1, 7.0)])
        job = await store.get_job(job_id)
        assert job is not None
        assert job.last_heartbeat is None
        await store.record_heartbeats([_beat(job_id, 2, 8.0)])
        beat = await store.last_heartbeat(job_id)
        assert beat is not None
        assert (beat.attempt, beat.time) == (2, 8.0)

    with_store(body)


def test_jobs_quiet_since_uses_heartbeat_else_update(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        ids = await store.insert_jobs([new_job(i) for i in range(4)], now=1.0)
        await store.apply_transitions(
            [
                Transition(job_id=j, status=S.MATCHED, minor_status="", source="t", time=10.0)
                for j in ids[:3]
            ]
        )
        # ids[0]: heartbeat at 50 -> quiet only before 50; ids[1]: no beat, updated 10.
        await store.record_heartbeats([_beat(ids[0], 1, 50.0)])
        await store.apply_transitions(
            [Transition(job_id=ids[2], status=S.RUNNING, minor_status="", source="t", time=40.0)]
        )
        active = (S.MATCHED, S.RUNNING)
        quiet = await store.jobs_quiet_since(active, cutoff=30.0)
        assert [j.job_id for j in quiet] == [ids[1]]
        quiet = await store.jobs_quiet_since(active, cutoff=45.0)
        assert [j.job_id for j in quiet] == [ids[1], ids[2]]
        quiet = await store.jobs_quiet_since(active, cutoff=60.0)
        assert [j.job_id for j in quiet] == ids[:3]
        assert [j.job_id for j in await store.jobs_quiet_since((S.RUNNING,), 60.0)] == [ids[2]]
        # ids[3] is Waiting: not in the statuses asked for.
        assert await store.jobs_quiet_since((), 1e9) == []

    with_store(body)


def test_job_outputs_returns_current_attempt_only(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        out1 = OutputRecord(
            job_id=job_id, attempt=1, lfn="/b/out_1.root", se="SE-A", size=10, adler32="0000000a"
        )
        await store.apply_transitions(
            [
                Transition(job_id=job_id, status=S.MATCHED, minor_status="", source="t", time=2.0),
                Transition(job_id=job_id, status=S.RUNNING, minor_status="", source="t", time=3.0),
            ]
        )
        done = Transition(
            job_id=job_id,
            status=S.FAILED,
            minor_status="Application error",
            source="wrapper",
            time=4.0,
            expect_attempt=1,
        )
        assert await store.finish_attempt(done, [out1], [], []) is not None
        assert await store.job_outputs(job_id) == [out1]
        await store.apply_transitions(
            [
                Transition(
                    job_id=job_id, status=S.RESCHEDULED, minor_status="", source="t", time=5.0
                ),
                Transition(
                    job_id=job_id,
                    status=S.WAITING,
                    minor_status="",
                    source="t",
                    time=5.0,
                    attempt=2,
                    reschedule_count=1,
                ),
            ]
        )
        assert await store.job_outputs(job_id) == []
        assert await store.job_outputs(424242) == []

    with_store(body)
