"""Pilots agent: pilots whose state stays Unknown for over an hour are declared Aborted."""

from __future__ import annotations

from collections.abc import Callable

from central.agents.base import PeriodicAgent
from central.logic.pilot_records import abort_lost_pilots
from central.store.interface import Store

DEFAULT_PERIOD = 300.0


def lost_pilots_agent(
    store: Store, *, clock: Callable[[], float], period: float = DEFAULT_PERIOD
) -> PeriodicAgent:
    async def step() -> None:
        await abort_lost_pilots(store, clock())

    return PeriodicAgent("lost_pilots", period, step)
