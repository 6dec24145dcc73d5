"""Stalled jobs agent: no heartbeat -> Stalled -> Rescheduled, Failed or Killed."""

from __future__ import annotations

from collections.abc import Callable

from central.agents.base import PeriodicAgent
from central.config import CentralConfig
from central.logic.heartbeats import HeartbeatBuffer
from central.logic.sessions import SessionRegistry
from central.logic.stalled import check_stalled_jobs
from central.matcher import Matcher
from central.store.interface import Store


def stalled_jobs_agent(
    store: Store,
    matcher: Matcher,
    heartbeats: HeartbeatBuffer,
    sessions: SessionRegistry,
    config: CentralConfig,
    *,
    clock: Callable[[], float],
) -> PeriodicAgent:
    async def step() -> None:
        await check_stalled_jobs(store, matcher, heartbeats, sessions, config, now=clock())

    return PeriodicAgent("stalled_jobs", config.central.stalled_check_period, step)
