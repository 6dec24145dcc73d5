"""The embedded store: one SQLite file in WAL mode, driven from one dedicated thread.

All SQLite work runs on a single-worker executor that owns the only connection, so the asyncio
loop never blocks on disk and calls from many tasks are serialized without locks. Every method
is one transaction (BEGIN IMMEDIATE ... COMMIT for writes) committed before the coroutine
returns; `synchronous=FULL` makes that commit durable (durability before acknowledgement).
The SQL lives in the _sqlite_* modules next to this one; this class only owns the connection.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

from central.models.job_states import JobStatus
from central.store import _sqlite_attempts as attempt_sql
from central.store import _sqlite_data as data_sql
from central.store import _sqlite_jobs as job_sql
from central.store import _sqlite_pilots as pilot_sql
from central.store import _sqlite_security as security_sql
from central.store import _sqlite_storage as storage_sql
from central.store._group_commit import GroupCommit
from central.store.records import (
    ActiveSlot,
    BanRecord,
    CompactWaiting,
    FailoverRequestRecord,
    FileRecord,
    HeartbeatRecord,
    HistoryRecord,
    JobFilter,
    JobRecord,
    NewFailoverRequest,
    NewJob,
    OutputRecord,
    PilotFilter,
    PilotRecord,
    PilotUpdate,
    QueueStatusFilter,
    QueueStatusRecord,
    RevocationRecord,
    SandboxRecord,
    SECostRecord,
    SEHealthRecord,
    StatusCountRecord,
    StorageElementRecord,
    Transition,
    WaitingJob,
)
from central.store.schema import SCHEMA_VERSION, migrate
from gridpilot.logs import get_logger

log = get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Another process (an admin tool) may hold the write lock briefly; wait instead of failing.
_BUSY_TIMEOUT_MS = 10_000


class StoreClosedError(RuntimeError):
    """The store was used before open() or after close()."""


ReleaseListener = Callable[[Sequence[ActiveSlot]], None]


class SqliteStore:
    """central.store.Store on one SQLite database file (e.g. data_dir / "central.db")."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._release_listener: ReleaseListener | None = None
        self._writes = GroupCommit(self._open_connection)

    # ---- plumbing ----------------------------------------------------------------------------

    def _connect(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened and committed explicitly below.
        conn = sqlite3.connect(self.path, isolation_level=None, cached_statements=512)
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            found = migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return found

    def _open_connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError(f"store {self.path} is not open")
        return self._conn

    @property
    def write_transactions(self) -> int:
        """Write transactions committed so far (each holds one or more write calls)."""
        return self._writes.transactions

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _transaction(
        self,
        begin: str,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        conn = self._conn
        if conn is None:
            raise StoreClosedError(f"store {self.path} is not open")
        conn.execute(begin)
        try:
            result = fn(conn, *args, **kwargs)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def _run(
        self,
        begin: str,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if self._executor is None:
            raise StoreClosedError(f"store {self.path} is not open")
        call = functools.partial(self._transaction, begin, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _write(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        # Group commit: concurrent writes share one transaction (see _group_commit.py).
        if self._executor is None:
            raise StoreClosedError(f"store {self.path} is not open")

        def call(conn: sqlite3.Connection) -> T:
            return fn(conn, *args, **kwargs)

        return await self._writes.write(self._executor, call)

    async def _read(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        return await self._run("BEGIN", fn, *args, **kwargs)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            raise RuntimeError(f"store {self.path} is already open")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            found = await asyncio.get_running_loop().run_in_executor(executor, self._connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        log.info("store.opened", path=str(self.path), schema_version=SCHEMA_VERSION, found=found)

    async def close(self) -> None:
        if self._executor is None:
            return
        # Writes already queued are committed (and answered) before the connection closes.
        await self._writes.drain()
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # Queued calls run first (one FIFO worker), then the connection closes.
        await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=False)
        log.info("store.closed", path=str(self.path))

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- jobs --------------------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: float) -> list[int]:
        return await self._write(job_sql.insert_jobs, jobs, now)

    async def get_job(self, job_id: int) -> JobRecord | None:
        return await self._read(job_sql.get_job, job_id)

    async def list_jobs(self, where: JobFilter, limit: int = 0) -> list[JobRecord]:
        return await self._read(job_sql.list_jobs, where, limit)

    async def job_history(self, job_id: int) -> list[HistoryRecord]:
        return await self._read(job_sql.job_history, job_id)

    def set_release_listener(self, listener: ReleaseListener | None) -> None:
        self._release_listener = listener

    def _released(self, slots: Sequence[ActiveSlot]) -> None:
        # Called on the event loop once the transaction is committed: exactly once per slot.
        if slots and self._release_listener is not None:
            self._release_listener(slots)

    async def apply_transitions(self, transitions: Sequence[Transition]) -> list[JobRecord | None]:
        if not transitions:
            return []
        results, released = await self._write(attempt_sql.apply_transitions, transitions)
        self._released(released)
        return results

    async def finish_attempt(
        self,
        transition: Transition,
        outputs: Sequence[OutputRecord],
        files: Sequence[FileRecord],
        requests: Sequence[NewFailoverRequest],
    ) -> JobRecord | None:
        job, released = await self._write(
            attempt_sql.finish_attempt, transition, outputs, files, requests
        )
        self._released(released)
        return job

    async def waiting_jobs(self) -> list[WaitingJob]:
        return await self._read(job_sql.waiting_jobs)

    async def waiting_jobs_compact(self) -> CompactWaiting:
        return await self._read(job_sql.waiting_jobs_compact)

    async def running_jobs_for_limits(self) -> list[ActiveSlot]:
        return await self._read(job_sql.running_jobs_for_limits)

    async def jobs_quiet_since(
        self, statuses: Sequence[JobStatus], cutoff: float
    ) -> list[JobRecord]:
        return await self._read(job_sql.jobs_quiet_since, statuses, cutoff)

    async def record_heartbeats(self, beats: Sequence[HeartbeatRecord]) -> None:
        if beats:
            await self._write(job_sql.record_heartbeats, beats)

    async def last_heartbeat(self, job_id: int) -> HeartbeatRecord | None:
        return await self._read(job_sql.last_heartbeat, job_id)

    async def summarize_projects(self, where: JobFilter) -> list[StatusCountRecord]:
        return await self._read(job_sql.summarize_projects, where)

    async def job_outputs(self, job_id: int) -> list[OutputRecord]:
        return await self._read(job_sql.job_outputs, job_id)

    # ---- pilots ------------------------------------------------------------------------------

    async def insert_pilots(self, pilots: Sequence[PilotRecord]) -> None:
        if pilots:
            await self._write(pilot_sql.insert_pilots, pilots)

    async def update_pilots(self, updates: Sequence[PilotUpdate]) -> None:
        if updates:
            await self._write(pilot_sql.update_pilots, updates)

    async def get_pilot(self, pilot_id: str) -> PilotRecord | None:
        return await self._read(pilot_sql.get_pilot, pilot_id)

    async def list_pilots(self, where: PilotFilter) -> list[PilotRecord]:
        return await self._read(pilot_sql.list_pilots, where)

    async def upsert_queue_statuses(self, statuses: Sequence[QueueStatusRecord]) -> None:
        if statuses:
            await self._write(pilot_sql.upsert_queue_statuses, statuses)

    async def list_queue_statuses(self, where: QueueStatusFilter) -> list[QueueStatusRecord]:
        return await self._read(pilot_sql.list_queue_statuses, where)

    # ---- storage elements and the replica catalog ---------------------------------------------

    async def upsert_storage_elements(self, ses: Sequence[StorageElementRecord]) -> None:
        await self._write(data_sql.upsert_storage_elements, ses)

    async def list_storage_elements(self) -> list[StorageElementRecord]:
        return await self._read(data_sql.list_storage_elements)

    async def set_storage_element_status(self, name: str, read: bool, write: bool) -> bool:
        return await self._write(data_sql.set_storage_element_status, name, read, write)

    async def add_files(self, files: Sequence[FileRecord]) -> None:
        await self._write(data_sql.add_files, files)

    async def get_files(self, lfns: Sequence[str]) -> dict[str, FileRecord]:
        return await self._read(data_sql.get_files, lfns)

    async def list_files(self, lpn: str) -> list[FileRecord]:
        return await self._read(data_sql.list_files, lpn)

    async def remove_replica(self, lfn: str, se: str) -> None:
        await self._write(data_sql.remove_replica, lfn, se)

    async def remove_file(self, lfn: str) -> bool:
        return await self._write(data_sql.remove_file, lfn)

    async def set_replica_suspect(self, lfn: str, se: str, reason: str) -> bool:
        return await self._write(data_sql.set_replica_suspect, lfn, se, reason)

    # ---- SE health and learned costs ---------------------------------------------------------

    async def put_se_health(self, health: SEHealthRecord) -> None:
        await self._write(storage_sql.put_se_health, health)

    async def list_se_health(self) -> list[SEHealthRecord]:
        return await self._read(storage_sql.list_se_health)

    async def put_se_costs(self, costs: Sequence[SECostRecord]) -> None:
        if costs:
            await self._write(storage_sql.put_se_costs, costs)

    async def list_se_costs(self) -> list[SECostRecord]:
        return await self._read(storage_sql.list_se_costs)

    # ---- failover requests -------------------------------------------------------------------

    async def add_failover_requests(
        self, requests: Sequence[NewFailoverRequest], now: float
    ) -> list[int]:
        return await self._write(data_sql.add_failover_requests, requests, now)

    async def due_failover_requests(self, now: float, limit: int) -> list[FailoverRequestRecord]:
        return await self._read(data_sql.due_failover_requests, now, limit)

    async def update_failover_request(
        self,
        request_id: int,
        *,
        status: str,
        attempts: int,
        last_error: str,
        next_try: float,
        now: float,
    ) -> None:
        await self._write(
            data_sql.update_failover_request,
            request_id,
            status=status,
            attempts=attempts,
            last_error=last_error,
            next_try=next_try,
            now=now,
        )

    async def list_failover_requests(
        self,
        job_id: int = 0,
        status: str = "",
        request_ids: Sequence[int] = (),
        lfn: str = "",
    ) -> list[FailoverRequestRecord]:
        return await self._read(data_sql.list_failover_requests, job_id, status, request_ids, lfn)

    # ---- sandboxes ---------------------------------------------------------------------------

    async def add_sandbox(self, sandbox: SandboxRecord) -> None:
        await self._write(data_sql.add_sandbox, sandbox)

    async def get_sandbox(self, sandbox_id: str) -> SandboxRecord | None:
        return await self._read(data_sql.get_sandbox, sandbox_id)

    # ---- security ----------------------------------------------------------------------------

    async def add_revocation(self, revocation: RevocationRecord) -> RevocationRecord:
        return await self._write(security_sql.add_revocation, revocation)

    async def list_revocations(self) -> list[RevocationRecord]:
        return await self._read(security_sql.list_revocations)

    async def consume_registration(self, jti: str, expires: float) -> bool:
        return await self._write(security_sql.consume_registration, jti, expires)

    async def used_registrations(self, now: float) -> dict[str, float]:
        return await self._read(security_sql.used_registrations, now)

    async def prune_registrations(self, now: float) -> int:
        return await self._write(security_sql.prune_registrations, now)

    async def set_ban(self, kind: str, ban: BanRecord) -> None:
        _check_ban_kind(kind)
        await self._write(security_sql.set_ban, kind, ban)

    async def list_bans(self, kind: str) -> list[BanRecord]:
        _check_ban_kind(kind)
        return await self._read(security_sql.list_bans, kind)


def _check_ban_kind(kind: str) -> None:
    if kind not in ("site", "user"):
        raise ValueError(f"unknown ban kind {kind!r} (site or user)")
