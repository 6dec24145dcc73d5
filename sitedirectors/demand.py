"""How many pilots a queue gets this cycle: a pure function of central's demand and the limits.

    min(eligible jobs - waiting pilots - idle pilots,   # demand (idle pilots are back-pressure)
        max_waiting - waiting,                          # free waiting slots
        max_total - (waiting + running),
        max_per_cycle,
        max(ramp_up_step, floor(ramp_up * running)))    # ramp-up damping

"Waiting" pilots are those submitted but not yet registered. Idle pilots are registered pilots
that found no job recently: they will take the next eligible jobs, so each one cancels one job
of demand -- the guard against the classic flood of pilots that find nothing to run. A blocked
(central) or disabled (local config) queue gets nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class QueueDemandView:
    """Central's answer for one queue (GetPilotDemand's QueueDemand)."""

    eligible_jobs: int
    pilots_waiting: int
    pilots_running: int
    pilots_idle: int = 0
    blocked: bool = False


@dataclass(frozen=True)
class QueueLimits:
    max_waiting: int
    max_total: int
    max_per_cycle: int
    ramp_up: float = 1.0
    ramp_up_step: int = 5
    enabled: bool = True


@dataclass(frozen=True)
class Decision:
    count: int
    # Which bound decided the count ("demand", "max_waiting", ..., "blocked", "disabled").
    limited_by: str


def pilots_to_submit(demand: QueueDemandView, limits: QueueLimits) -> Decision:
    if not limits.enabled:
        return Decision(0, "disabled")
    if demand.blocked:
        return Decision(0, "blocked")
    waiting = max(0, demand.pilots_waiting)
    running = max(0, demand.pilots_running)
    bounds = {
        "demand": demand.eligible_jobs - waiting - max(0, demand.pilots_idle),
        "max_waiting": limits.max_waiting - waiting,
        "max_total": limits.max_total - (waiting + running),
        "max_per_cycle": limits.max_per_cycle,
        "ramp_up": max(limits.ramp_up_step, math.floor(limits.ramp_up * running)),
    }
    # First bound wins ties, so the reason names the most basic limit.
    limited_by = min(bounds, key=lambda name: bounds[name])
    return Decision(max(0, bounds[limited_by]), limited_by)
