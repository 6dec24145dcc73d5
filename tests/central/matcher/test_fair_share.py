from __future__ import annotations

from collections import Counter

from central.matcher import MatcherPolicy, Requirements, Resources, TaskQueues

PILOT = Resources(site="SITE-A", cpu_time_left=10**6)


def _fill(
    tq: TaskQueues, owner: str, group: str, count: int, start: int, *, priority: int = 0
) -> None:
    key = Requirements(owner=owner, group=group, cpu_time=360)
    for job_id in range(start, start + count):
        tq.add_key(job_id, priority, owner, group, key)


def _owner_of(job_id: int) -> str:
    return f"o{job_id // 1_000_000}"


def _draw(tq: TaskQueues, count: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(count):
        job_id = tq.match(PILOT)
        assert job_id is not None
        counts[_owner_of(job_id)] += 1
    return counts


def test_group_shares_three_to_one_within_five_percent() -> None:
    tq = TaskQueues(MatcherPolicy(group_shares={"physics": 3.0, "users": 1.0}), seed=1)
    _fill(tq, "o1", "physics", 20_000, 1_000_000)
    _fill(tq, "o2", "users", 20_000, 2_000_000)
    counts = _draw(tq, 10_000)
    ratio = counts["o1"] / counts["o2"]
    assert abs(ratio - 3.0) <= 0.15, counts


def test_group_share_is_split_among_its_owners() -> None:
    # "big" has two owners at 1000 together; "solo" has one owner at 1000 alone.
    tq = TaskQueues(seed=2)
    _fill(tq, "o1", "big", 10_000, 1_000_000)
    _fill(tq, "o2", "big", 10_000, 2_000_000)
    _fill(tq, "o3", "solo", 10_000, 3_000_000)
    counts = _draw(tq, 8_000)
    assert abs(counts["o3"] / 8_000 - 0.5) < 0.03, counts
    assert abs(counts["o1"] / counts["o2"] - 1.0) < 0.1, counts


def test_sharing_group_pools_its_owners_by_priority() -> None:
    tq = TaskQueues(MatcherPolicy(sharing_groups=frozenset({"prod"})), seed=3)
    _fill(tq, "o1", "prod", 100, 1_000_000, priority=1)
    _fill(tq, "o2", "prod", 100, 2_000_000, priority=5)
    # One pool: the higher-priority owner's jobs all go first, no per-owner split.
    counts = _draw(tq, 100)
    assert counts == Counter({"o2": 100})
    assert _draw(tq, 100) == Counter({"o1": 100})


def test_small_share_does_not_starve_and_empty_groups_yield() -> None:
    tq = TaskQueues(MatcherPolicy(group_shares={"big": 1000.0, "tiny": 10.0}), seed=4)
    _fill(tq, "o1", "big", 5_000, 1_000_000)
    _fill(tq, "o2", "tiny", 5_000, 2_000_000)
    counts = _draw(tq, 4_000)
    assert 10 <= counts["o2"] <= 100, counts
    # Once "big" is drained, "tiny" gets everything.
    while tq.match(PILOT) is not None:
        pass
    assert len(tq) == 0


def test_zero_share_group_only_when_nothing_else_waits() -> None:
    tq = TaskQueues(MatcherPolicy(group_shares={"paused": 0.0}), seed=5)
    _fill(tq, "o1", "paused", 10, 1_000_000)
    _fill(tq, "o2", "normal", 10, 2_000_000)
    assert _draw(tq, 10) == Counter({"o2": 10})
    assert _draw(tq, 10) == Counter({"o1": 10})
    assert tq.match(PILOT) is None


def test_owner_without_jobs_for_this_pilot_yields_to_group_mates() -> None:
    tq = TaskQueues(seed=6)
    elsewhere = Requirements(owner="o1", group="g", cpu_time=360, sites=("SITE-B",))
    tq.add_key(1_000_001, 0, "o1", "g", elsewhere)
    _fill(tq, "o2", "g", 50, 2_000_000)
    assert _draw(tq, 50) == Counter({"o2": 50})
    assert tq.match(PILOT) is None
    assert tq.match(Resources(site="SITE-B", cpu_time_left=10**6)) == 1_000_001


def test_configure_changes_shares_at_runtime() -> None:
    tq = TaskQueues(seed=7)
    _fill(tq, "o1", "a", 20_000, 1_000_000)
    _fill(tq, "o2", "b", 20_000, 2_000_000)
    even = _draw(tq, 4_000)
    assert abs(even["o1"] / even["o2"] - 1.0) < 0.15, even
    tq.configure(MatcherPolicy(group_shares={"a": 1.0, "b": 4.0}))
    skewed = _draw(tq, 4_000)
    assert abs(skewed["o2"] / skewed["o1"] - 4.0) < 0.6, skewed
