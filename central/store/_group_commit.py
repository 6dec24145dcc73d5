"""Group commit for the SQLite store: concurrent writes share one transaction and one fsync.

Every write call queues here. While one transaction is being committed, newly arriving writes
wait and then all go into the next transaction together, each inside its own SAVEPOINT: a
write that fails is rolled back alone and its caller gets the error, the others commit. Every
caller is answered only after the COMMIT that holds its write (durability before
acknowledgement); if that COMMIT fails, every caller of the batch gets the error. A lone
write waits for no timer: it goes into the next transaction at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar, cast

T = TypeVar("T")

Call = Callable[[sqlite3.Connection], Any]
# (succeeded, value or exception) per call, in order.
Outcome = tuple[bool, Any]

# Bounds the work one transaction holds the write lock for (and one fsync covers).
DEFAULT_MAX_BATCH = 256


def run_batch(conn: sqlite3.Connection, calls: list[Call]) -> list[Outcome]:
    """One write transaction for all `calls` (runs on the store's thread)."""
    # IMMEDIATE takes the write lock up front, so the transaction never fails half-way
    # because another writer (an admin tool on the same file) got in between.
    conn.execute("BEGIN IMMEDIATE")
    outcomes: list[Outcome] = []
    try:
        for call in calls:
            conn.execute("SAVEPOINT write_call")
            try:
                value = call(conn)
            except Exception as exc:  # this caller's error; the others still commit
                conn.execute("ROLLBACK TO write_call")
                conn.execute("RELEASE write_call")
                outcomes.append((False, exc))
                continue
            conn.execute("RELEASE write_call")
            outcomes.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


class GroupCommit:
    """The write queue of one store; `connection` gives the open connection (store thread)."""

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection],
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._connection = connection
        self._max_batch = max_batch
        self._pending: list[tuple[Call, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0

    async def write(self, executor: Executor, call: Callable[[sqlite3.Connection], T]) -> T:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(executor))
        return cast(T, await future)

    async def drain(self) -> None:
        """Wait until every queued write has been committed (or has failed)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def _transaction(self, calls: list[Call]) -> list[Outcome]:
        return run_batch(self._connection(), calls)

    async def _flush_all(self, executor: Executor) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            calls = [call for call, _ in batch]
            try:
                outcomes = await loop.run_in_executor(executor, self._transaction, calls)
            except Exception as exc:  # the whole transaction failed: nobody's write is in
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.transactions += 1
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # the caller went away; its write is committed all the same
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
