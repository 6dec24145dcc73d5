from __future__ import annotations

import random

from central.matcher import Requirements, Resources, TaskQueues, encode_requirements
from central.store.records import WaitingJob

BIG = Resources(site="SITE-A", platform="el9", cpu_time_left=10**7, cores=8, memory_mb=32768)


def _req(**kw: object) -> bytes:
    fields: dict[str, object] = {"owner": "alice", "group": "belle", "cpu_time": 360}
    fields.update(kw)
    return encode_requirements(Requirements(**fields))  # type: ignore[arg-type]


def _add(tq: TaskQueues, job_id: int, priority: int = 0, **kw: object) -> None:
    tq.add(job_id, priority, "alice", "belle", _req(**kw))


def test_identical_requirements_share_a_queue() -> None:
    tq = TaskQueues()
    for job_id in range(1, 6):
        _add(tq, job_id)
    _add(tq, 6, sites=("SITE-B",))
    _add(tq, 7, priority=5)  # priority is not part of the key
    assert tq.queue_count == 2
    assert len(tq) == 7


def test_priority_then_first_queued() -> None:
    tq = TaskQueues()
    _add(tq, 10, priority=1)
    _add(tq, 3, priority=1)
    _add(tq, 7, priority=9, tags=("1GB",))
    _add(tq, 5, priority=0)
    _add(tq, 2, priority=1, tags=("1GB",))  # another queue: its head (2) is older than 10
    order = [tq.match(BIG) for _ in range(6)]
    assert order == [7, 2, 10, 3, 5, None]
    assert len(tq) == 0
    assert tq.queue_count == 0


def test_cpu_time_rule() -> None:
    tq = TaskQueues()
    _add(tq, 1, cpu_time=3600)
    short = Resources(site="SITE-A", cpu_time_left=3599)
    assert tq.match(short) is None
    assert tq.count_eligible(short) == 0
    assert tq.match(Resources(site="SITE-A", cpu_time_left=3600)) == 1


def test_site_and_banned_site_rules() -> None:
    tq = TaskQueues()
    _add(tq, 1, sites=("SITE-B",))
    _add(tq, 2, banned_sites=("SITE-A",))
    _add(tq, 3)
    assert tq.count_eligible(BIG) == 1
    assert tq.match(BIG) == 3
    assert tq.match(BIG) is None
    site_b = Resources(site="SITE-B", cpu_time_left=10**6)
    assert tq.count_eligible(site_b) == 2
    assert {tq.match(site_b), tq.match(site_b)} == {1, 2}


def test_platform_rule() -> None:
    tq = TaskQueues()
    _add(tq, 1, platform="el7")
    _add(tq, 2, platform="el9")
    _add(tq, 3)
    el9 = Resources(site="X", platform="el9", cpu_time_left=10**6)
    assert tq.count_eligible(el9) == 2
    no_platform = Resources(site="X", cpu_time_left=10**6)
    assert tq.count_eligible(no_platform) == 1
    assert tq.match(no_platform) == 3


def test_tag_rules_for_cores_memory_and_custom_tags() -> None:
    tq = TaskQueues()
    _add(tq, 1, tags=("4Processors", "MultiProcessor"))
    _add(tq, 2, tags=("16GB",))
    _add(tq, 3, tags=("GPU",))
    small = Resources(site="X", cpu_time_left=10**6, cores=2, memory_mb=8192)
    assert tq.match(small) is None
    big = Resources(site="X", cpu_time_left=10**6, cores=4, memory_mb=16384)
    assert tq.count_eligible(big) == 2
    gpu = Resources(site="X", cpu_time_left=10**6, tags=("GPU",))
    assert tq.match(gpu) == 3


def test_remove_and_readd_never_gives_a_job_twice() -> None:
    tq = TaskQueues()
    for job_id in range(1, 200):
        _add(tq, job_id, priority=job_id % 3)
    rng = random.Random(7)
    removed = rng.sample(range(1, 200), 120)
    for job_id in removed:
        assert tq.remove(job_id)
    assert not tq.remove(removed[0])
    # Re-adding some removed jobs must not resurrect their stale heap entries as duplicates.
    for job_id in removed[:40]:
        _add(tq, job_id, priority=job_id % 3)
    given: list[int] = []
    while (job := tq.match(BIG)) is not None:
        given.append(job)
    assert len(given) == len(set(given)) == 199 - 120 + 40
    assert set(given).isdisjoint(removed[40:])


def test_readd_with_new_priority_moves_the_job() -> None:
    tq = TaskQueues()
    _add(tq, 1, priority=0)
    _add(tq, 2, priority=5)
    _add(tq, 1, priority=9)
    assert len(tq) == 2
    assert [tq.match(BIG), tq.match(BIG), tq.match(BIG)] == [1, 2, None]


def test_rebuild_replaces_content() -> None:
    tq = TaskQueues()
    _add(tq, 99)
    tq.rebuild(
        [
            WaitingJob(job_id=1, priority=0, owner="a", group="g", requirements=_req()),
            WaitingJob(job_id=2, priority=3, owner="a", group="g", requirements=_req()),
        ]
    )
    assert 99 not in tq
    assert len(tq) == 2
    assert tq.match(BIG) == 2


def test_count_eligible_does_not_consume() -> None:
    tq = TaskQueues()
    for job_id in range(1, 11):
        _add(tq, job_id)
    assert tq.count_eligible(BIG) == 10
    assert tq.count_eligible(BIG) == 10
    assert len(tq) == 10
