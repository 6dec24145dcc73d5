"""Failover agent: replicate outputs parked on failover SEs to their destination SEs."""

from __future__ import annotations

from collections.abc import Callable

from central.agents.base import PeriodicAgent
from central.config import CentralConfig
from central.logic.failover import execute_failover_requests
from central.logic.storage_elements import StorageElements
from central.store.interface import Store


def failover_agent(
    store: Store, ses: StorageElements, config: CentralConfig, *, clock: Callable[[], float]
) -> PeriodicAgent:
    async def step() -> None:
        # Drain everything due now, a batch at a time, before sleeping again.
        while True:
            report = await execute_failover_requests(store, ses, config, clock)
            if report.done + report.retried + report.failed == 0:
                return

    return PeriodicAgent("failover", config.central.failover_period, step)
