"""Helpers for the store tests: a real SQLite file in tmp_path, driven with asyncio.run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from central.store.records import NewJob
from central.store.sqlite import SqliteStore

T = TypeVar("T")

StoreRunner = Callable[[Callable[[SqliteStore], Awaitable[Any]]], Any]


def run_with_store(path: Path, body: Callable[[SqliteStore], Awaitable[T]]) -> T:
    """Open the store at `path`, run `body` on it, close it (even on failure)."""

    async def main() -> T:
        async with SqliteStore(path) as store:
            return await body(store)

    return asyncio.run(main())


def new_job(n: int = 0, **overrides: Any) -> NewJob:
    fields: dict[str, Any] = {
        "spec": f"spec-{n}".encode(),
        "requirements": b"req-a",
        "project": "proj",
        "owner": "alice",
        "group": "belle",
        "job_name": f"job-{n}",
        "priority": 5,
        "job_type": "User",
    }
    fields.update(overrides)
    return NewJob(**fields)
