"""SE probe agent: checks every storage element's health and space (central/logic/se_health)."""

from __future__ import annotations

from collections.abc import Callable

from central.agents.base import PeriodicAgent
from central.logic.se_health import probe_storage_elements
from central.logic.storage_elements import StorageElements
from central.store.interface import Store


def se_probe_agent(
    store: Store, ses: StorageElements, *, clock: Callable[[], float], period: float
) -> PeriodicAgent:
    async def step() -> None:
        await probe_storage_elements(store, ses, clock)

    return PeriodicAgent("se_probes", period, step)
