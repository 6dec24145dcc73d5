"""Microbenchmark of the in-process match function (no RPC).

1,000,000 waiting jobs by default; GRIDPILOT_BENCH_FULL=1 uses the issue's 10,000,000. Under
`--benchmark-disable` (CI) each benchmark runs once; timings are printed, never asserted.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator

import psutil
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from central.matcher import MatcherPolicy, Requirements, Resources, RunningLimit, TaskQueues

FULL = os.environ.get("GRIDPILOT_BENCH_FULL") == "1"
WAITING = 10_000_000 if FULL else 1_000_000
QUEUES = 200
SITES = 50
GROUPS = 5
MATCHES_PER_ROUND = 20_000


def _queues() -> dict[int, Requirements]:
    queues: dict[int, Requirements] = {}
    for tq_id in range(QUEUES):
        group = f"group{tq_id % GROUPS}"
        queues[tq_id] = Requirements(
            owner=f"user{tq_id % 23}",
            group=group,
            cpu_time=(360, 3600, 21600, 86400)[tq_id % 4],
            # Half the queues name one site, half run anywhere.
            sites=(f"SITE-{tq_id % SITES}",) if tq_id % 2 else (),
            platform="el9" if tq_id % 3 else "",
            job_type="User" if tq_id % 4 else "Production",
            tags=("8Processors", "MultiProcessor") if tq_id % 10 == 0 else (),
        )
    return queues


def _rows() -> Iterator[tuple[int, int, int]]:
    for job_id in range(1, WAITING + 1):
        yield (job_id, job_id % 11, (job_id * 7919) % QUEUES)


def _pilots() -> list[Resources]:
    return [
        Resources(
            site=f"SITE-{i % SITES}",
            ce=f"ce{i % SITES}",
            platform="el9",
            cpu_time_left=(4000, 90000, 200000)[i % 3] - i,  # shrinking time left: cache keys
            cores=(1, 8)[i % 2],
            memory_mb=(2048, 16384)[i % 2],
        )
        for i in range(500)
    ]


class Built:
    def __init__(self) -> None:
        policy = MatcherPolicy(
            group_shares={"group0": 3000.0, "group1": 500.0},
            sharing_groups=frozenset({"group2"}),
            running_limits=[
                RunningLimit(site="SITE-3", attribute="JobType", value="User", limit=10**9)
            ],
        )
        self.matcher = TaskQueues(policy, seed=42)
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        self.matcher.rebuild_compact(_rows(), _queues())
        self.build_seconds = time.perf_counter() - started
        gc.collect()
        self.rss_bytes = psutil.Process().memory_info().rss - rss_before
        self.given: set[int] = set()


@pytest.fixture(scope="module")
def built() -> Built:
    return Built()


def test_bench_match(benchmark: BenchmarkFixture, built: Built) -> None:
    matcher = built.matcher
    pilots = _pilots()
    rates: list[float] = []

    def run() -> None:
        started = time.perf_counter()
        got = [matcher.match(pilots[i % len(pilots)]) for i in range(MATCHES_PER_ROUND)]
        rates.append(MATCHES_PER_ROUND / (time.perf_counter() - started))
        matched = {job for job in got if job is not None}
        # Saturated: every pilot finds work, and no job is given twice across rounds.
        assert len(matched) == MATCHES_PER_ROUND
        assert built.given.isdisjoint(matched)
        built.given.update(matched)

    benchmark(run)
    assert len(built.given) == MATCHES_PER_ROUND * len(rates)
    best = max(rates)
    median = sorted(rates)[len(rates) // 2]
    benchmark.extra_info.update(
        waiting=WAITING,
        matches_per_s=round(median),
        build_s=round(built.build_seconds, 2),
        rss_bytes_per_job=round(built.rss_bytes / WAITING, 1),
    )
    print(
        f"\nmatch: {WAITING:,} waiting, {median:,.0f} matches/s median, {best:,.0f} best "
        f"of {len(rates)} rounds; "
        f"rebuild_compact {built.build_seconds:.2f} s, "
        f"RSS {built.rss_bytes / WAITING:.1f} B/job"
    )


def test_bench_count_eligible(benchmark: BenchmarkFixture, built: Built) -> None:
    matcher = built.matcher
    pilots = _pilots()

    def run() -> int:
        return sum(matcher.count_eligible(p) for p in pilots)

    total = benchmark(run)
    assert 0 < total <= len(pilots) * len(matcher)
