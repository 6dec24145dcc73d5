from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from central.logic.transitions import TransitionBatcher
from central.models.job_states import JobStatus
from central.store.records import JobRecord, Transition
from central.store.sqlite import SqliteStore
from tests.central.logic.helpers import world
from tests.support.inprocess import run


class CountingStore(SqliteStore):
    """The real store, counting how many transactions apply_transitions opened."""

    calls = 0

    async def apply_transitions(self, transitions: Sequence[Transition]) -> list[JobRecord | None]:
        self.calls += 1
        return await super().apply_transitions(transitions)


def test_concurrent_matches_share_commits(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            ids = await w.submit(200)
        store = CountingStore(tmp_path / "logic.db")
        await store.open()
        try:
            batcher = TransitionBatcher(store)

            async def match(job_id: int) -> JobRecord | None:
                return await batcher.apply(
                    Transition(
                        job_id=job_id,
                        status=JobStatus.MATCHED,
                        minor_status="",
                        source="test",
                        time=1.0,
                        expect=(JobStatus.WAITING,),
                        pilot_id=f"p{job_id}",
                    )
                )

            results = await asyncio.gather(*(match(i) for i in [*ids, ids[0]]))
            applied = [r for r in results if r is not None]
            # Every job matched once; the duplicate request for job 1 found it taken.
            assert sorted(r.job_id for r in applied) == ids
            assert results[-1] is None
            assert store.calls < 10
        finally:
            await store.close()

    run(body())


def test_store_errors_reach_every_waiter(tmp_path: Path) -> None:
    async def body() -> None:
        store = SqliteStore(tmp_path / "closed.db")  # never opened: every call fails
        batcher = TransitionBatcher(store)
        t = Transition(job_id=1, status=JobStatus.MATCHED, minor_status="", source="t", time=1.0)
        results = await asyncio.gather(batcher.apply(t), batcher.apply(t), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)

    run(body())
