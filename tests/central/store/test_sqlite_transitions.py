"""apply_transitions (compare-and-set) and finish_attempt (atomic final report)."""

from __future__ import annotations

from typing import Any

import pytest

from central.models.job_states import JobStatus
from central.store.records import (
    FileRecord,
    HeartbeatRecord,
    JobFilter,
    NewFailoverRequest,
    OutputRecord,
    Transition,
)
from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner, new_job

S = JobStatus


def _t(
    job_id: int, status: JobStatus, time: float = 10.0, minor: str = "", **kw: Any
) -> Transition:
    return Transition(
        job_id=job_id, status=status, minor_status=minor, source="test", time=time, **kw
    )


def test_applied_transition_updates_fields_and_writes_history(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        matched = Transition(
            job_id=job_id,
            status=S.MATCHED,
            minor_status="Assigned",
            source="Matcher",
            time=5.0,
            expect=(S.WAITING,),
            expect_attempt=1,
            site="LCG.KEK.jp",
            pilot_id="pilot-1",
        )
        (job,) = await store.apply_transitions([matched])
        assert job is not None
        assert (job.status, job.minor_status, job.site, job.pilot_id) == (
            S.MATCHED,
            "Assigned",
            "LCG.KEK.jp",
            "pilot-1",
        )
        assert (job.updated, job.submitted) == (5.0, 1.0)
        assert job == await store.get_job(job_id)
        # None fields keep their value; set fields change.
        running = Transition(
            job_id=job_id,
            status=S.RUNNING,
            minor_status="Application",
            source="JobWrapper",
            time=6.0,
            application_status="basf2 running",
            kill_requested=True,
            output_sandbox="ab" * 32,
        )
        (job,) = await store.apply_transitions([running])
        assert job is not None
        assert (job.site, job.pilot_id) == ("LCG.KEK.jp", "pilot-1")
        assert job.application_status == "basf2 running"
        assert job.kill_requested is True
        assert job.output_sandbox == "ab" * 32
        history = await store.job_history(job_id)
        assert [
            (h.status, h.minor_status, h.application_status, h.time, h.source) for h in history
        ] == [
            (S.WAITING, "", "", 1.0, "JobStore"),
            (S.MATCHED, "Assigned", "", 5.0, "Matcher"),
            (S.RUNNING, "Application", "basf2 running", 6.0, "JobWrapper"),
        ]

    with_store(body)


def test_cas_refuses_unexpected_status_attempt_or_unknown_job(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        results = await store.apply_transitions(
            [
                _t(job_id, S.KILLED, expect=(S.RUNNING, S.STALLED)),
                _t(job_id, S.MATCHED, expect_attempt=2),
                _t(987_654, S.MATCHED),
            ]
        )
        assert results == [None, None, None]
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.status, job.updated) == (S.WAITING, 1.0)
        assert len(await store.job_history(job_id)) == 1

    with_store(body)


def test_batch_is_applied_in_order_with_per_item_results(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        a, b = await store.insert_jobs([new_job(0), new_job(1)], now=1.0)
        results = await store.apply_transitions(
            [
                _t(a, S.MATCHED, expect=(S.WAITING,)),
                # Sees the previous item's change: a is Matched now, not Waiting.
                _t(a, S.MATCHED, expect=(S.WAITING,), pilot_id="second"),
                _t(b, S.KILLED, expect=(S.WAITING,)),
                _t(a, S.RUNNING, expect=(S.MATCHED,)),
            ]
        )
        assert [r.status if r else None for r in results] == [S.MATCHED, None, S.KILLED, S.RUNNING]
        job_a = await store.get_job(a)
        assert job_a is not None
        assert job_a.pilot_id == ""
        assert [h.status for h in await store.job_history(a)] == [S.WAITING, S.MATCHED, S.RUNNING]
        assert await store.apply_transitions([]) == []

    with_store(body)


def test_illegal_status_change_is_not_applied(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        # Waiting -> Done skips the whole life cycle; the state table forbids it.
        assert await store.apply_transitions([_t(job_id, S.DONE)]) == [None]
        job = await store.get_job(job_id)
        assert job is not None
        assert job.status is S.WAITING
        # A same-status update (new minor status) is always allowed.
        (job,) = await store.apply_transitions([_t(job_id, S.WAITING, minor="Pilot Agent")])
        assert job is not None
        assert job.minor_status == "Pilot Agent"

    with_store(body)


def test_reset_heartbeat_clears_last_heartbeat(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        await store.apply_transitions([_t(job_id, S.MATCHED), _t(job_id, S.RUNNING)])
        await store.record_heartbeats(
            [
                HeartbeatRecord(
                    job_id=job_id,
                    attempt=1,
                    time=20.0,
                    cpu_seconds=1.0,
                    wall_seconds=1.0,
                    rss_bytes=1,
                    disk_free_bytes=1,
                    load_average=0.1,
                )
            ]
        )
        (job,) = await store.apply_transitions([_t(job_id, S.STALLED, time=30.0)])
        assert job is not None
        assert job.last_heartbeat == 20.0  # kept unless asked
        (job,) = await store.apply_transitions(
            [_t(job_id, S.RESCHEDULED, time=31.0, reset_heartbeat=True)]
        )
        assert job is not None
        assert job.last_heartbeat is None

    with_store(body)


def _final(job_id: int, attempt: int, status: JobStatus = S.COMPLETED) -> Transition:
    return Transition(
        job_id=job_id,
        status=status,
        minor_status="Pending Requests",
        source="JobWrapper",
        time=50.0,
        expect=(S.RUNNING, S.COMPLETING),
        expect_attempt=attempt,
    )


def test_finish_attempt_writes_outputs_catalog_and_requests(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        await store.apply_transitions(
            [_t(job_id, S.MATCHED), _t(job_id, S.RUNNING), _t(job_id, S.COMPLETING)]
        )
        await store.add_files(
            [FileRecord(lfn="/belle/x/shared.root", size=7, adler32="00000007", ses=("SE-A",))]
        )
        outputs = [
            OutputRecord(
                job_id=job_id,
                attempt=1,
                lfn="/belle/x/out_1_1.root",
                se="FAIL-SE",
                size=100,
                adler32="0badcafe",
            ),
        ]
        files = [
            FileRecord(
                lfn="/belle/x/out_1_1.root",
                size=100,
                adler32="0badcafe",
                ses=("FAIL-SE",),
                job_id=job_id,
            ),
            FileRecord(lfn="/belle/x/shared.root", size=7, adler32="00000007", ses=("SE-B",)),
        ]
        requests = [
            NewFailoverRequest(
                job_id=job_id, lfn="/belle/x/out_1_1.root", source_se="FAIL-SE", target_se="SE-A"
            )
        ]
        job = await store.finish_attempt(_final(job_id, 1), outputs, files, requests)
        assert job is not None
        assert (job.status, job.minor_status) == (S.COMPLETED, "Pending Requests")
        assert await store.job_outputs(job_id) == outputs
        catalog = await store.get_files(["/belle/x/out_1_1.root", "/belle/x/shared.root"])
        assert catalog["/belle/x/out_1_1.root"].ses == ("FAIL-SE",)
        assert catalog["/belle/x/out_1_1.root"].job_id == job_id
        assert catalog["/belle/x/shared.root"].ses == ("SE-A", "SE-B")
        (request,) = await store.list_failover_requests(job_id=job_id)
        assert (request.status, request.created, request.next_try, request.attempts) == (
            "Waiting",
            50.0,
            50.0,
            0,
        )
        assert [h.status for h in await store.job_history(job_id)][-1] is S.COMPLETED

    with_store(body)


def test_finish_attempt_writes_nothing_when_transition_does_not_apply(
    with_store: StoreRunner,
) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        await store.apply_transitions([_t(job_id, S.MATCHED), _t(job_id, S.RUNNING)])
        outputs = [
            OutputRecord(
                job_id=job_id,
                attempt=2,
                lfn="/late/out.root",
                se="SE-A",
                size=1,
                adler32="00000001",
            )
        ]
        files = [FileRecord(lfn="/late/out.root", size=1, adler32="00000001", ses=("SE-A",))]
        requests = [
            NewFailoverRequest(job_id=job_id, lfn="/late/out.root", source_se="F", target_se="SE-A")
        ]
        # A late wrapper of attempt 2 while the job is at attempt 1.
        assert await store.finish_attempt(_final(job_id, 2), outputs, files, requests) is None
        # A report for a job that is not running any more.
        await store.apply_transitions([_t(job_id, S.KILLED)])
        assert await store.finish_attempt(_final(job_id, 1), outputs, files, requests) is None
        assert await store.get_files(["/late/out.root"]) == {}
        assert await store.list_failover_requests() == []
        job = await store.get_job(job_id)
        assert job is not None
        assert job.status is S.KILLED
        assert len(await store.job_history(job_id)) == 4

    with_store(body)


def test_finish_attempt_rolls_back_everything_on_catalog_conflict(
    with_store: StoreRunner,
) -> None:
    async def body(store: SqliteStore) -> None:
        (job_id,) = await store.insert_jobs([new_job()], now=1.0)
        await store.apply_transitions([_t(job_id, S.MATCHED), _t(job_id, S.RUNNING)])
        await store.add_files(
            [FileRecord(lfn="/x/taken.root", size=5, adler32="00000005", ses=("SE-A",))]
        )
        outputs = [
            OutputRecord(
                job_id=job_id, attempt=1, lfn="/x/taken.root", se="SE-B", size=6, adler32="00000006"
            )
        ]
        files = [
            FileRecord(lfn="/x/new.root", size=1, adler32="00000001", ses=("SE-B",)),
            FileRecord(lfn="/x/taken.root", size=6, adler32="00000006", ses=("SE-B",)),
        ]
        with pytest.raises(ValueError, match=r"/x/taken\.root"):
            await store.finish_attempt(_final(job_id, 1, S.DONE), outputs, files, [])
        job = await store.get_job(job_id)
        assert job is not None
        assert job.status is S.RUNNING
        assert await store.job_outputs(job_id) == []
        assert await store.get_files(["/x/new.root"]) == {}
        assert (await store.get_files(["/x/taken.root"]))["/x/taken.root"].ses == ("SE-A",)
        assert len(await store.job_history(job_id)) == 3

    with_store(body)


def test_bulk_insert_and_transition_of_100k_jobs(with_store: StoreRunner) -> None:
    n = 100_000

    async def body(store: SqliteStore) -> None:
        ids = await store.insert_jobs([new_job(i, priority=i % 11) for i in range(n)], now=1.0)
        assert len(ids) == n
        assert ids == list(range(ids[0], ids[0] + n))
        waiting = await store.waiting_jobs()
        assert [w.job_id for w in waiting] == ids
        assert [w.priority for w in waiting[:12]] == [*range(11), 0]
        job = await store.get_job(ids[54_321])
        assert job is not None
        assert (job.spec, job.job_name) == (b"spec-54321", "job-54321")
        # One batch of 10k matches is one transaction.
        batch = [_t(j, S.MATCHED, expect=(S.WAITING,), pilot_id=f"p{j % 7}") for j in ids[:10_000]]
        results = await store.apply_transitions(batch)
        assert all(r is not None and r.status is S.MATCHED for r in results)
        counts = {r.status: r.count for r in await store.summarize_projects(JobFilter())}
        assert counts == {S.MATCHED: 10_000, S.WAITING: n - 10_000}

    with_store(body)
