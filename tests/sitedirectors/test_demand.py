"""The pilots-to-submit formula, table-driven: one row per bound that can decide."""

from __future__ import annotations

import pytest

from sitedirectors.demand import QueueDemandView, QueueLimits, pilots_to_submit

LIMITS = QueueLimits(max_waiting=10, max_total=100, max_per_cycle=20, ramp_up=1.0, ramp_up_step=5)


def limits(**changes: object) -> QueueLimits:
    values: dict[str, object] = {
        "max_waiting": LIMITS.max_waiting,
        "max_total": LIMITS.max_total,
        "max_per_cycle": LIMITS.max_per_cycle,
        "ramp_up": LIMITS.ramp_up,
        "ramp_up_step": LIMITS.ramp_up_step,
        "enabled": LIMITS.enabled,
    }
    values.update(changes)
    return QueueLimits(**values)  # type: ignore[arg-type]


Case = tuple[str, int, int, int, int, bool, QueueLimits, int, str]

# (id, eligible, waiting, running, idle, blocked, limits, expected count, limited_by)
CASES: list[Case] = [
    ("no demand", 0, 0, 0, 0, False, LIMITS, 0, "demand"),
    ("few jobs, no pilots", 3, 0, 0, 0, False, LIMITS, 3, "demand"),
    ("waiting pilots cover jobs", 3, 3, 0, 0, False, LIMITS, 0, "demand"),
    ("more pilots than jobs", 3, 5, 0, 0, False, LIMITS, 0, "demand"),
    ("waiting pilots count against demand", 8, 2, 10, 0, False, LIMITS, 6, "demand"),
    ("idle pilots are back-pressure", 8, 0, 10, 5, False, LIMITS, 3, "demand"),
    ("idle pilots cancel all demand", 4, 0, 10, 6, False, LIMITS, 0, "demand"),
    ("free waiting slots", 1000, 7, 50, 0, False, LIMITS, 3, "max_waiting"),
    ("waiting slots full", 1000, 10, 50, 0, False, LIMITS, 0, "max_waiting"),
    ("max total", 1000, 0, 96, 0, False, LIMITS, 4, "max_total"),
    ("over max total", 1000, 0, 120, 0, False, LIMITS, 0, "max_total"),
    ("per cycle cap", 1000, 0, 50, 0, False, limits(max_waiting=100), 20, "max_per_cycle"),
    ("ramp up from nothing", 1000, 0, 0, 0, False, LIMITS, 5, "ramp_up"),
    ("ramp up doubles", 1000, 0, 8, 0, False, limits(max_waiting=100), 8, "ramp_up"),
    ("ramp up factor", 1000, 0, 10, 0, False, limits(max_waiting=100, ramp_up=0.5), 5, "ramp_up"),
    (
        "linear ramp",
        1000,
        0,
        40,
        0,
        False,
        limits(max_waiting=50, ramp_up=0.0, ramp_up_step=3),
        3,
        "ramp_up",
    ),
    ("blocked queue", 1000, 0, 0, 0, True, LIMITS, 0, "blocked"),
    ("disabled queue", 1000, 0, 0, 0, False, limits(enabled=False), 0, "disabled"),
    ("negative counts clamp", 3, -1, -1, -1, False, LIMITS, 3, "demand"),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_pilots_to_submit(
    case: tuple[str, int, int, int, int, bool, QueueLimits, int, str],
) -> None:
    _id, eligible, waiting, running, idle, blocked, queue_limits, count, limited_by = case
    demand = QueueDemandView(eligible, waiting, running, idle, blocked)
    decision = pilots_to_submit(demand, queue_limits)
    assert (decision.count, decision.limited_by) == (count, limited_by)


def test_never_more_pilots_than_eligible_jobs() -> None:
    generous = QueueLimits(max_waiting=1000, max_total=1000, max_per_cycle=50, ramp_up_step=50)
    for eligible in range(10):
        for waiting in range(5):
            decision = pilots_to_submit(QueueDemandView(eligible, waiting, 0), generous)
            assert 0 <= decision.count <= max(0, eligible - waiting)


def test_ramp_up_converges_over_cycles() -> None:
    # Pilots start running (and take a job) right away here: each cycle may double what runs.
    queue = QueueLimits(max_waiting=1000, max_total=1000, max_per_cycle=1000, ramp_up_step=2)
    running, history = 0, []
    for _ in range(8):
        n = pilots_to_submit(QueueDemandView(100 - running, 0, running), queue).count
        history.append(n)
        running += n
    assert history == [2, 2, 4, 8, 16, 32, 36, 0]
    assert running == 100
