from __future__ import annotations

import pytest

from central.matcher import (
    MatcherPolicy,
    MatchingDelay,
    Requirements,
    Resources,
    RunningLimit,
    TaskQueues,
)

SITE_A = Resources(site="SITE-A", cpu_time_left=10**6)
SITE_B = Resources(site="SITE-B", cpu_time_left=10**6)


def _fill(tq: TaskQueues, job_type: str, count: int, start: int, owner: str = "alice") -> None:
    key = Requirements(owner=owner, group="belle", cpu_time=360, job_type=job_type)
    for job_id in range(start, start + count):
        tq.add_key(job_id, 0, owner, "belle", key)


def _limit(site: str, attribute: str, value: str, limit: int) -> RunningLimit:
    return RunningLimit(site=site, attribute=attribute, value=value, limit=limit)  # type: ignore[arg-type]


def test_running_limit_per_site_and_job_type() -> None:
    policy = MatcherPolicy(running_limits=[_limit("SITE-A", "JobType", "User", 2)])
    tq = TaskQueues(policy, seed=1)
    _fill(tq, "User", 10, 100)
    first = [tq.match(SITE_A), tq.match(SITE_A)]
    assert None not in first
    assert tq.match(SITE_A) is None
    assert tq.running("SITE-A", "JobType", "User") == 2
    # Another site is not limited; another job type at the limited site is not either.
    assert tq.match(SITE_B) is not None
    _fill(tq, "Production", 1, 500)
    assert tq.match(SITE_A) == 500
    # A matched job leaving the active states frees its slot.
    tq.release("SITE-A", "User", "alice", "belle")
    assert tq.match(SITE_A) is not None
    assert tq.match(SITE_A) is None


def test_running_limit_by_owner_and_group() -> None:
    policy = MatcherPolicy(
        running_limits=[
            _limit("SITE-A", "Owner", "alice", 1),
            _limit("SITE-B", "OwnerGroup", "belle", 0),
        ]
    )
    tq = TaskQueues(policy, seed=2)
    _fill(tq, "User", 5, 100, owner="alice")
    _fill(tq, "User", 5, 200, owner="bob")
    got = [tq.match(SITE_A) for _ in range(7)]
    matched = [j for j in got if j is not None]
    assert sum(1 for j in matched if j < 200) == 1
    assert sum(1 for j in matched if j >= 200) == 5
    assert tq.match(SITE_B) is None


def test_load_running_counts_jobs_active_before_a_restart() -> None:
    policy = MatcherPolicy(running_limits=[_limit("SITE-A", "JobType", "User", 3)])
    tq = TaskQueues(policy, seed=3)
    _fill(tq, "User", 10, 100)
    tq.load_running([("SITE-A", "User", "alice", "belle")] * 2 + [("SITE-B", "User", "x", "y")])
    assert tq.match(SITE_A) is not None
    assert tq.match(SITE_A) is None
    # Releasing below zero (a job counted nowhere) is harmless.
    for _ in range(10):
        tq.release("SITE-C", "User", "alice", "belle")
    assert tq.running("SITE-C", "JobType", "User") == 0


def test_running_limit_reconfigured_at_runtime_counts_jobs_already_matched() -> None:
    tq = TaskQueues(seed=4)
    _fill(tq, "User", 10, 100)
    for _ in range(3):
        assert tq.match(SITE_A) is not None
    tq.configure(MatcherPolicy(running_limits=[_limit("SITE-A", "JobType", "User", 3)]))
    assert tq.match(SITE_A) is None
    tq.configure(MatcherPolicy(running_limits=[_limit("SITE-A", "JobType", "User", 4)]))
    assert tq.match(SITE_A) is not None
    assert tq.match(SITE_A) is None
    tq.configure(MatcherPolicy())
    assert tq.match(SITE_A) is not None


def test_matching_delay_paces_matches() -> None:
    delay = MatchingDelay(site="SITE-A", attribute="JobType", value="User", seconds=10.0)
    tq = TaskQueues(MatcherPolicy(matching_delays=[delay]), seed=5)
    _fill(tq, "User", 10, 100)
    _fill(tq, "Production", 2, 500)
    assert tq.match(SITE_A, now=1000.0) == 100
    # Within the delay only other job types match, and other sites are not paced.
    assert tq.match(SITE_A, now=1005.0) == 500
    assert tq.match(SITE_B, now=1005.0) == 101
    assert tq.match(SITE_A, now=1009.9) == 501
    assert tq.match(SITE_A, now=1009.9) is None
    assert tq.match(SITE_A, now=1010.0) == 102
    assert tq.match(SITE_A, now=1015.0) is None


def test_matching_delay_uses_the_clock_by_default_and_reloads() -> None:
    delay = MatchingDelay(site="SITE-A", attribute="Owner", value="alice", seconds=3600.0)
    tq = TaskQueues(MatcherPolicy(matching_delays=[delay]), seed=6)
    _fill(tq, "User", 5, 100)
    assert tq.match(SITE_A) == 100
    assert tq.match(SITE_A) is None
    tq.configure(MatcherPolicy())
    assert tq.match(SITE_A) == 101


def test_invalid_policy_is_rejected_and_previous_kept() -> None:
    tq = TaskQueues(MatcherPolicy(running_limits=[_limit("S", "JobType", "User", 1)]))
    with pytest.raises(ValueError, match="negative"):
        tq.configure(MatcherPolicy(running_limits=[_limit("S", "JobType", "User", -1)]))
    with pytest.raises(ValueError, match="attribute"):
        tq.configure(MatcherPolicy(running_limits=[_limit("S", "Site", "User", 1)]))
    with pytest.raises(ValueError, match="negative"):
        tq.configure(MatcherPolicy(group_shares={"g": -1.0}))
    assert tq.policy.running_limits[0].limit == 1
