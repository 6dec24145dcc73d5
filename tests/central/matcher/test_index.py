from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from central.matcher import Requirements, Resources, TaskQueues, encode_requirements
from central.store.records import WaitingJob

BIG = Resources(site="SITE-A", platform="el9", cpu_time_left=10**7, cores=8, memory_mb=32768)


def _key(owner: str = "alice", **kw: object) -> Requirements:
    fields: dict[str, object] = {"owner": owner, "group": "belle", "cpu_time": 360}
    fields.update(kw)
    return Requirements(**fields)  # type: ignore[arg-type]


def test_rebuild_compact_without_per_job_requirements() -> None:
    tq = TaskQueues(seed=1)
    tq.add_key(999, 0, "alice", "belle", _key())
    queues = {1: _key(), 2: _key(sites=("SITE-B",)), 3: _key(tags=("GPU",))}
    rows = [(10, 0, 1), (11, 5, 1), (12, 0, 2), (13, 0, 3), (14, 99, 1), (15, -4, 1)]
    tq.rebuild_compact(rows, queues)
    assert 999 not in tq
    assert len(tq) == 6
    assert tq.count_eligible(BIG) == 4
    # Priorities are clamped to 0..10; within a priority, first queued first.
    assert [tq.match(BIG) for _ in range(5)] == [14, 11, 10, 15, None]
    assert tq.match(Resources(site="SITE-B", cpu_time_left=10**6)) == 12


def test_rebuild_compact_rejects_unknown_queue_and_handles_duplicates() -> None:
    tq = TaskQueues()
    with pytest.raises(ValueError, match="unknown task queue 7"):
        tq.rebuild_compact([(1, 0, 7)], {1: _key()})
    tq.rebuild_compact([(1, 0, 1), (1, 3, 2)], {1: _key(), 2: _key(owner="bob")})
    assert len(tq) == 1
    assert tq.count_eligible(BIG) == 1
    assert tq.match(BIG) == 1
    assert tq.match(BIG) is None


def test_rebuild_from_waiting_jobs_still_works() -> None:
    tq = TaskQueues()
    req = encode_requirements(_key())
    tq.rebuild([WaitingJob(job_id=5, priority=1, owner="a", group="g", requirements=req)])
    assert len(tq) == 1
    assert tq.match(BIG) == 5


def test_cached_eligibility_sees_new_queues_and_shrinking_cpu_time() -> None:
    tq = TaskQueues(seed=2)
    tq.add_key(1, 0, "alice", "belle", _key(cpu_time=3600))
    short = Resources(site="SITE-A", cpu_time_left=3000)
    assert tq.count_eligible(short) == 0
    # A new queue appears after the pilot's description was cached.
    tq.add_key(2, 0, "alice", "belle", _key(cpu_time=1800))
    assert tq.count_eligible(short) == 1
    # Pilots whose time left changes between requests share one entry but stay exact.
    assert tq.count_eligible(Resources(site="SITE-A", cpu_time_left=3599)) == 1
    assert tq.count_eligible(Resources(site="SITE-A", cpu_time_left=3600)) == 2
    assert tq.count_eligible(Resources(site="SITE-A", cpu_time_left=1799)) == 0


def test_banned_owners_invalidate_the_cache() -> None:
    tq = TaskQueues()
    tq.add_key(1, 0, "alice", "belle", _key())
    assert tq.count_eligible(BIG) == 1
    tq.set_banned_owners(frozenset({"alice"}))
    assert tq.count_eligible(BIG) == 0
    assert tq.match(BIG) is None
    tq.set_banned_owners(frozenset())
    assert tq.match(BIG) == 1


def test_emptied_queues_are_dropped_eventually() -> None:
    tq = TaskQueues()
    for job_id in range(2_000):
        tq.add_key(job_id, 0, "alice", "belle", _key(owner=f"o{job_id}"))
        assert tq.match(BIG) == job_id
    assert tq.queue_count == 0
    assert len(tq._queues) < 600
    tq.add_key(5, 0, "alice", "belle", _key(owner="o3"))
    assert tq.match(BIG) == 5


def test_remove_keeps_lanes_compact() -> None:
    tq = TaskQueues()
    for job_id in range(10_000):
        tq.add_key(job_id, 0, "alice", "belle", _key())
    for job_id in range(0, 10_000, 2):
        assert tq.remove(job_id)
    lane = next(iter(tq._queues.values())).lanes[0]
    assert len(lane.ids) - lane.head <= 2 * lane.live + 64
    assert [tq.match(BIG) for _ in range(3)] == [1, 3, 5]


def _rows(jobs: int, queues: int) -> Iterator[tuple[int, int, int]]:
    for job_id in range(1, jobs + 1):
        yield (job_id, job_id % 3, job_id % queues)


def _queues(count: int) -> dict[int, Requirements]:
    return {
        i: _key(owner=f"u{i % 17}", sites=(f"SITE-{i % 50}",) if i % 2 else (), job_type="User")
        for i in range(count)
    }


def test_index_memory_per_waiting_job_is_at_most_150_bytes() -> None:
    jobs = 1_000_000
    queues = _queues(200)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tq = TaskQueues()
        started = time.perf_counter()
        tq.rebuild_compact(_rows(jobs, 200), queues)
        elapsed = time.perf_counter() - started
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(tq) == jobs
    per_job = used / jobs
    print(f"index: {per_job:.1f} B/job, rebuild {elapsed:.2f} s (under tracemalloc)")
    assert per_job <= 150
    assert tq.count_eligible(Resources(site="SITE-1", cpu_time_left=10**6)) == jobs // 200 * 104


def test_member_map_is_invisible_to_the_garbage_collector() -> None:
    # Millions of waiting jobs must not lengthen full GC pauses on the matcher's hot path.
    tq = TaskQueues()
    for job_id in range(1_000, 2_000):
        tq.add_key(job_id, job_id % 11, "alice", "belle", _key(owner=f"o{job_id % 7}"))
    tq.rebuild_compact(_rows(1_000, 10), _queues(10))
    assert not gc.is_tracked(tq._members)
    tq.add_key(5_000, 1, "alice", "belle", _key())
    assert tq.remove(5_000)
    assert not gc.is_tracked(tq._members)
