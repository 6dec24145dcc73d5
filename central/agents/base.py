"""A periodic agent: one asyncio task running one step every `period` seconds.

A failing step is logged and retried at the next period; the agent never dies of it. `wake()`
runs the next step at once (e.g. right after a failover request was added).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from gridpilot.logs import get_logger

log = get_logger(__name__)


class PeriodicAgent:
    def __init__(self, name: str, period: float, step: Callable[[], Awaitable[object]]) -> None:
        if period <= 0:
            raise ValueError(f"agent {name}: period must be positive, not {period}")
        self.name = name
        self.period = period
        self._step = step
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.failures = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"agent {self.name} is already running")
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"agent:{self.name}")

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> None:
        try:
            await self._step()
        except Exception:
            self.failures += 1
            log.exception("agent.step_failed", agent=self.name)
        self.runs += 1

    async def _loop(self) -> None:
        log.info("agent.started", agent=self.name, period=self.period)
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.period)
            self._wake.clear()
            if self._stopping:
                break
            await self.run_once()

    async def stop(self, wait: float = 10.0) -> None:
        """Let a running step finish (up to `wait` seconds), then end the loop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(task, wait)
        except TimeoutError:
            log.warning("agent.stop_timeout", agent=self.name, wait=wait)
        log.info("agent.stopped", agent=self.name, runs=self.runs, failures=self.failures)
