"""Group commit: concurrent writes share transactions, a failing write fails alone, every
caller is answered after its commit, and close() commits what was queued."""

from __future__ import annotations

import asyncio
from pathlib import Path

from central.models.job_states import JobStatus
from central.store.records import FileRecord, JobFilter, StorageElementRecord, Transition
from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner, new_job, run_with_store

SE = StorageElementRecord(
    name="SE", site="S", url="file:///se", read_allowed=True, write_allowed=True
)


def _match(job_id: int) -> Transition:
    return Transition(
        job_id=job_id,
        status=JobStatus.MATCHED,
        minor_status="",
        source="test",
        time=2.0,
        expect=(JobStatus.WAITING,),
        pilot_id=f"p{job_id}",
        site="S",
    )


def test_concurrent_writes_share_transactions(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> tuple[int, list[bool]]:
        await store.insert_jobs([new_job(n) for n in range(300)], 1.0)
        before = store.write_transactions
        results = await asyncio.gather(
            *(store.apply_transitions([_match(n)]) for n in range(1, 301))
        )
        return store.write_transactions - before, [r[0] is not None for r in results]

    transactions, applied = with_store(body)
    assert all(applied)
    # 300 concurrent callers, batches of at most 256: two transactions, not 300.
    assert transactions == 2


def test_a_failing_write_fails_alone(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> list[object]:
        await store.upsert_storage_elements([SE])
        await store.add_files([FileRecord(lfn="/a", size=1, adler32="00000001", ses=("SE",))])
        await store.insert_jobs([new_job(0), new_job(1)], 1.0)
        conflicting = FileRecord(lfn="/a", size=2, adler32="00000002", ses=("SE",))
        return list(
            await asyncio.gather(
                store.apply_transitions([_match(1)]),
                store.add_files([conflicting]),
                store.apply_transitions([_match(2)]),
                return_exceptions=True,
            )
        )

    first, failed, last = with_store(body)
    assert isinstance(failed, ValueError)
    assert isinstance(first, list)
    assert first[0] is not None
    assert isinstance(last, list)
    assert last[0] is not None


def test_close_commits_writes_already_queued(db_path: Path) -> None:
    async def body(store: SqliteStore) -> list[bool]:
        await store.insert_jobs([new_job(n) for n in range(50)], 1.0)
        writes = [asyncio.ensure_future(store.apply_transitions([_match(n)])) for n in range(1, 51)]
        await asyncio.sleep(0)  # queued, not yet committed
        await store.close()
        return [w.done() and w.result()[0] is not None for w in writes]

    assert all(run_with_store(db_path, body))

    async def check(store: SqliteStore) -> list[JobStatus]:
        return [j.status for j in await store.list_jobs(JobFilter())]

    assert run_with_store(db_path, check) == [JobStatus.MATCHED] * 50


def test_a_lone_write_commits_without_waiting(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> int:
        before = store.write_transactions
        await asyncio.wait_for(store.insert_jobs([new_job(0)], 1.0), timeout=1.0)
        return store.write_transactions - before

    assert with_store(body) == 1
