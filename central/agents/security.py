"""Security agents: re-read signing keys and JWKS files; forget spent registration tokens."""

from __future__ import annotations

from collections.abc import Callable

from central.agents.base import PeriodicAgent
from central.auth.runtime import REGISTRATION_GRACE, Security
from central.store.interface import Store
from gridpilot.logs import get_logger

log = get_logger(__name__)

# Spent registration tokens are kept until they expire; a daily sweep keeps the table small.
PRUNE_PERIOD = 3600.0


def key_refresh_agent(security: Security, *, period: float) -> PeriodicAgent:
    """Keys rotated with `gridpilot admin keys rotate` sign and verify within one period."""

    async def step() -> None:
        security.refresh_keys()

    return PeriodicAgent("key_refresh", period, step)


def registration_pruner(
    store: Store,
    security: Security,
    *,
    clock: Callable[[], float],
    period: float = PRUNE_PERIOD,
) -> PeriodicAgent:
    async def step() -> None:
        # An expired registration token is refused as expired, so forgetting it is safe once
        # the verifier's leeway has passed too.
        cutoff = clock() - REGISTRATION_GRACE
        pruned = await store.prune_registrations(cutoff)
        security.revocations.prune_used(cutoff)
        if pruned:
            log.info("security.registrations_pruned", count=pruned)

    return PeriodicAgent("registration_pruner", period, step)
