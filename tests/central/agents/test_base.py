from __future__ import annotations

import asyncio

import pytest

from central.agents import PeriodicAgent
from tests.support.inprocess import run


def test_runs_periodically_survives_failures_and_stops() -> None:
    async def body() -> None:
        calls: list[int] = []

        async def step() -> None:
            calls.append(len(calls))
            if len(calls) == 2:
                raise RuntimeError("boom")

        agent = PeriodicAgent("test", 0.02, step)
        agent.start()
        with pytest.raises(RuntimeError, match="already running"):
            agent.start()
        for _ in range(200):
            if len(calls) >= 4:
                break
            await asyncio.sleep(0.01)
        await agent.stop()
        assert not agent.running
        assert agent.failures == 1
        assert agent.runs >= 4
        done = agent.runs
        await asyncio.sleep(0.1)
        assert agent.runs == done

    run(body())


def test_wake_runs_at_once() -> None:
    async def body() -> None:
        ran = asyncio.Event()

        async def step() -> None:
            ran.set()

        agent = PeriodicAgent("sleepy", 3600.0, step)
        agent.start()
        await asyncio.sleep(0.05)
        assert not ran.is_set()
        agent.wake()
        await asyncio.wait_for(ran.wait(), 5)
        await agent.stop()

    run(body())


def test_bad_period() -> None:
    async def step() -> None:
        return None

    with pytest.raises(ValueError, match="period must be positive"):
        PeriodicAgent("bad", 0, step)
