"""The matcher kept in step with the store: group commit, restart, released slots."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from central.config_matcher import MatcherSection, RunningLimitSection
from central.logic.matching import matcher_policy, restore_matcher
from central.logic.transitions import kill_transition
from central.matcher import TaskQueues
from central.models.job_states import JobStatus
from central.store.records import JobRecord, Transition
from central.store.sqlite import SqliteStore
from tests.central.logic.helpers import RESOURCES, world
from tests.support.central_process import SITE
from tests.support.inprocess import run

USER_LIMIT_1 = MatcherSection(
    running_limits=[RunningLimitSection(site=SITE, attribute="JobType", value="User", limit=1)]
)


class CommitWatchingStore(SqliteStore):
    """The real store, recording its apply_transitions transactions and what they committed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.committed: set[int] = set()

    async def apply_transitions(self, transitions: Sequence[Transition]) -> list[JobRecord | None]:
        results = await super().apply_transitions(transitions)
        self.batches.append(len(transitions))
        self.committed.update(r.job_id for r in results if r is not None)
        return results


def _matched_in_file(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT count(*) FROM jobs WHERE status = 'Matched'").fetchone()
    finally:
        conn.close()
    return int(count)


def test_matches_of_one_loop_iteration_share_one_commit_and_answer_after_it(
    tmp_path: Path,
) -> None:
    async def body() -> tuple[list[int], list[int]]:
        async with world(tmp_path, store_class=CommitWatchingStore) as w:
            store = w.store
            assert isinstance(store, CommitWatchingStore)
            await w.submit(300)

            async def match(n: int) -> int:
                got = await w.match(f"p{n}")
                assert got is not None
                # Answered only once its own match is committed.
                assert got.job.job_id in store.committed
                return got.job.job_id

            ids = await asyncio.gather(*(match(n) for n in range(200)))
            return ids, store.batches

    ids, batches = run(body())
    assert len(set(ids)) == 200
    # All 200 requests arrived in one loop iteration: one transaction for all of them.
    assert batches == [200]
    assert _matched_in_file(tmp_path / "logic.db") == 200


def test_restart_rebuilds_waiting_jobs_and_running_counts(tmp_path: Path) -> None:
    async def first() -> list[int]:
        async with world(tmp_path) as w:
            await w.submit(5)
            await w.submit(4, priority=7, tags=["GPU"])
            got = [await w.match(f"p{n}") for n in range(3)]
            return [a.job.job_id for a in got if a is not None]

    matched = run(first())
    assert len(matched) == 3

    async def second() -> tuple[int, int, int | None]:
        store = SqliteStore(tmp_path / "logic.db")
        await store.open()
        try:
            matcher = TaskQueues()
            waiting = await restore_matcher(store, matcher, USER_LIMIT_1)
            running = matcher.running(SITE, "JobType", "User")
            # Three User jobs already hold slots at SITE: a limit of 1 lets nothing through.
            return waiting, running, matcher.match(RESOURCES, 1.0)
        finally:
            await store.close()

    waiting, running, blocked = run(second())
    assert waiting == 6
    assert running == 3
    assert blocked is None


def test_a_slot_is_released_once_when_its_job_leaves_the_active_states(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            w.matcher.configure(matcher_policy(USER_LIMIT_1))
            await w.submit(3)
            first = await w.match("p1")
            assert first is not None
            assert await w.match("p2") is None  # the site's one User slot is taken
            kill = kill_transition(first.job, w.clock(), "test", "Killed")
            # The same kill twice: only the first applies, so only one slot comes back.
            assert [r is not None for r in await w.store.apply_transitions([kill, kill])] == [
                True,
                False,
            ]
            assert w.matcher.running(SITE, "JobType", "User") == 0
            second = await w.match("p2")
            assert second is not None
            assert w.matcher.running(SITE, "JobType", "User") == 1

    run(body())


def test_a_requester_gone_mid_commit_leaves_a_consistent_matcher(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            w.matcher.configure(matcher_policy(USER_LIMIT_1))
            (job_id,) = await w.submit(1)
            request = asyncio.ensure_future(w.match("p1"))
            await asyncio.sleep(0)  # matched in memory, commit under way
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            job: JobRecord | None = None
            for _ in range(200):  # the commit finishes without its requester
                job = await w.store.get_job(job_id)
                if job is not None and job.status == JobStatus.MATCHED:
                    break
                await asyncio.sleep(0.01)
            assert job is not None
            assert job.status == JobStatus.MATCHED
            assert job.pilot_id == "p1"
            # Still holding its slot, and not back in the queues.
            assert w.matcher.running(SITE, "JobType", "User") == 1
            assert len(w.matcher) == 0

    run(body())
