"""Waiting for the first of several things (events, a task, a delay) without leaking tasks."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_first(
    *events: asyncio.Event,
    task: asyncio.Future[Any] | None = None,
    max_wait: float | None = None,
) -> None:
    """Return when any event is set, `task` is done, or `max_wait` seconds passed."""
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    watched: set[asyncio.Future[Any]] = set(waiters)
    if task is not None:
        watched.add(task)
    try:
        await asyncio.wait(watched, timeout=max_wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
