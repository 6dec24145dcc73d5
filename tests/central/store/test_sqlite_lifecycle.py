"""Opening, closing, schema versions, durability across restarts and concurrent callers."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from central.models.job_states import JobStatus
from central.models.pilot_states import PilotState
from central.store.records import (
    FileRecord,
    HeartbeatRecord,
    JobFilter,
    NewFailoverRequest,
    PilotRecord,
    SandboxRecord,
    StorageElementRecord,
    Transition,
)
from central.store.schema import SCHEMA_VERSION, SchemaVersionError
from central.store.sqlite import SqliteStore, StoreClosedError
from tests.central.store.helpers import StoreRunner, new_job, run_with_store

S = JobStatus
REPO_ROOT = Path(__file__).resolve().parents[3]


def test_open_creates_wal_database_with_schema_version(db_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await store.insert_jobs([new_job()], now=1.0)

    run_with_store(db_path, body)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {
            "jobs",
            "job_history",
            "heartbeats",
            "job_outputs",
            "pilots",
            "storage_elements",
            "files",
            "replicas",
            "failover_requests",
            "sandboxes",
        } <= tables
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"jobs_status", "jobs_project", "jobs_owner", "jobs_site", "jobs_pilot_id"} <= (
            indexes
        )
    finally:
        conn.close()


def test_newer_schema_version_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    async def body(store: SqliteStore) -> None:
        raise AssertionError("must not open")

    with pytest.raises(SchemaVersionError, match="newer than this gridpilot supports"):
        run_with_store(db_path, body)


def test_use_before_open_and_after_close_raises(db_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(db_path)
        with pytest.raises(StoreClosedError):
            await store.get_job(1)
        await store.open()
        with pytest.raises(RuntimeError, match="already open"):
            await store.open()
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(StoreClosedError):
            await store.insert_jobs([new_job()], now=1.0)
        # A closed store can be opened again.
        await store.open()
        assert await store.get_job(1) is None
        await store.close()

    asyncio.run(main())


def test_everything_survives_close_and_reopen(db_path: Path) -> None:
    pilot = PilotRecord(
        pilot_id="p1",
        reference="r",
        site="S",
        ce="ce",
        queue="q",
        backend="ssh",
        director="d",
        state=PilotState.RUNNING,
        submitted=1.0,
        state_changed=2.0,
    )
    se = StorageElementRecord(
        name="SE-A", site="S", url="file:///a", read_allowed=True, write_allowed=True
    )
    sandbox = SandboxRecord(
        sandbox_id="ef" * 32, size=1, kind="output", owner="alice", job_id=1, attempt=1, created=3.0
    )
    beat = HeartbeatRecord(
        job_id=1,
        attempt=1,
        time=4.0,
        cpu_seconds=1.0,
        wall_seconds=1.0,
        rss_bytes=1,
        disk_free_bytes=1,
        load_average=1.0,
        stdout_tail=("x",),
    )

    async def write(store: SqliteStore) -> list[int]:
        ids = await store.insert_jobs([new_job(i) for i in range(3)], now=1.0)
        await store.apply_transitions(
            [
                Transition(
                    job_id=ids[0],
                    status=S.MATCHED,
                    minor_status="m",
                    source="t",
                    time=2.0,
                    pilot_id="p1",
                )
            ]
        )
        await store.record_heartbeats([beat])
        await store.insert_pilots([pilot])
        await store.upsert_storage_elements([se])
        await store.set_storage_element_status("SE-A", read=True, write=False)
        await store.add_files([FileRecord(lfn="/f", size=1, adler32="00000001", ses=("SE-A",))])
        await store.add_failover_requests(
            [NewFailoverRequest(job_id=ids[0], lfn="/f", source_se="F", target_se="SE-A")], 5.0
        )
        await store.add_sandbox(sandbox)
        return ids

    ids = run_with_store(db_path, write)
    assert ids[0] == 1

    async def check(store: SqliteStore) -> None:
        job = await store.get_job(ids[0])
        assert job is not None
        assert (job.status, job.pilot_id, job.last_heartbeat) == (S.MATCHED, "p1", 4.0)
        assert len(await store.list_jobs(JobFilter())) == 3
        assert len(await store.job_history(ids[0])) == 2
        assert await store.last_heartbeat(ids[0]) == beat
        assert await store.get_pilot("p1") == pilot
        (stored_se,) = await store.list_storage_elements()
        assert stored_se.write_allowed is False
        assert (await store.get_files(["/f"]))["/f"].ses == ("SE-A",)
        assert len(await store.list_failover_requests()) == 1
        assert await store.get_sandbox("ef" * 32) == sandbox
        # New ids continue after the old ones.
        assert await store.insert_jobs([new_job()], now=9.0) == [ids[-1] + 1]

    run_with_store(db_path, check)


def test_committed_before_return_survives_sigkill(db_path: Path) -> None:
    # A child inserts jobs and reports the ids the store returned; it is then killed
    # without any chance to flush or close. Every reported id must be in the file.
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from pathlib import Path
        from central.store.records import NewJob
        from central.store.sqlite import SqliteStore

        async def main() -> None:
            store = SqliteStore(Path({str(db_path)!r}))
            await store.open()
            for batch in range(3):
                jobs = [NewJob(spec=b"s", requirements=b"r", project="p", owner="o", group="g",
                               job_name=str(i), priority=1, job_type="User") for i in range(100)]
                ids = await store.insert_jobs(jobs, now=1.0)
                print(ids[0], ids[-1], flush=True)
            time.sleep(60)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline() for _ in range(3)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    reported = [tuple(int(x) for x in line.split()) for line in lines]
    assert len(reported) == 3

    async def check(store: SqliteStore) -> None:
        for first, last in reported:
            found = await store.list_jobs(JobFilter(job_ids=tuple(range(first, last + 1))))
            assert len(found) == 100

    run_with_store(db_path, check)


def test_concurrent_tasks_share_one_store(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        async def submitter(n: int) -> list[int]:
            ids: list[int] = []
            for _ in range(10):
                ids += await store.insert_jobs([new_job(n) for _ in range(5)], now=1.0)
            return ids

        batches = await asyncio.gather(*(submitter(n) for n in range(8)))
        all_ids = [i for batch in batches for i in batch]
        assert len(all_ids) == len(set(all_ids)) == 400

        # Many pilots race for the same jobs: compare-and-set lets exactly one win each.
        targets = all_ids[:20]

        async def matcher(pilot: int) -> list[int]:
            won: list[int] = []
            for job_id in targets:
                (job,) = await store.apply_transitions(
                    [
                        Transition(
                            job_id=job_id,
                            status=S.MATCHED,
                            minor_status="",
                            source="m",
                            time=2.0,
                            expect=(S.WAITING,),
                            pilot_id=f"p{pilot}",
                        )
                    ]
                )
                if job is not None:
                    won.append(job_id)
            return won

        async def reader() -> int:
            seen = 0
            for _ in range(20):
                seen += len(await store.list_jobs(JobFilter(statuses=(S.MATCHED,))))
            return seen

        reading = asyncio.create_task(reader())
        results = await asyncio.gather(*(matcher(p) for p in range(6)))
        assert await reading >= 0
        wins = [job_id for won in results for job_id in won]
        assert sorted(wins) == sorted(targets)
        for job_id in targets:
            assert len(await store.job_history(job_id)) == 2

    with_store(body)
