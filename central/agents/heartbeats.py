"""Heartbeat flusher: writes the buffered heartbeats to the store in one batch per period."""

from __future__ import annotations

from collections.abc import Callable

from central.agents.base import PeriodicAgent
from central.logic.heartbeats import HeartbeatBuffer

DEFAULT_PERIOD = 1.0


def heartbeat_flusher(
    heartbeats: HeartbeatBuffer, *, clock: Callable[[], float], period: float = DEFAULT_PERIOD
) -> PeriodicAgent:
    async def step() -> None:
        await heartbeats.flush(clock())

    return PeriodicAgent("heartbeat_flush", period, step)
