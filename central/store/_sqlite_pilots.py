"""Pilot records of the SQLite store: plain functions on a connection inside a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from central.models.pilot_states import PilotState
from central.store.records import (
    PilotFilter,
    PilotRecord,
    PilotUpdate,
    QueueStatusFilter,
    QueueStatusRecord,
)

_PILOT_COLUMNS = (
    "pilot_id, reference, site, ce, queue, backend, director, state, submitted, registered, "
    "last_heartbeat, jobs_run, status_reason, log_tail, idle_since, state_changed"
)


def _pilot(r: tuple[Any, ...]) -> PilotRecord:
    return PilotRecord(
        pilot_id=r[0],
        reference=r[1],
        site=r[2],
        ce=r[3],
        queue=r[4],
        backend=r[5],
        director=r[6],
        state=PilotState(r[7]),
        submitted=r[8],
        registered=r[9],
        last_heartbeat=r[10],
        jobs_run=r[11],
        status_reason=r[12],
        log_tail=r[13],
        idle_since=r[14],
        state_changed=r[15],
    )


def insert_pilots(conn: sqlite3.Connection, pilots: Sequence[PilotRecord]) -> None:
    conn.executemany(
        f"INSERT INTO pilots ({_PILOT_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pilot_id) DO NOTHING",
        (
            (
                p.pilot_id,
                p.reference,
                p.site,
                p.ce,
                p.queue,
                p.backend,
                p.director,
                p.state.value,
                p.submitted,
                p.registered,
                p.last_heartbeat,
                p.jobs_run,
                p.status_reason,
                p.log_tail,
                p.idle_since,
                # A record without a state-change time entered its state when submitted.
                p.state_changed or p.submitted,
            )
            for p in pilots
        ),
    )


_PLAIN_UPDATES = (
    "status_reason",
    "log_tail",
    "reference",
    "registered",
    "last_heartbeat",
    "jobs_run",
)


def update_pilots(conn: sqlite3.Connection, updates: Sequence[PilotUpdate]) -> None:
    for u in updates:
        sets: list[str] = []
        params: list[Any] = []
        if u.state is not None:
            # CASE reads the old state, so state_changed moves only on a real change.
            sets.append("state_changed = CASE WHEN state != ? THEN ? ELSE state_changed END")
            params += [u.state.value, u.time]
            sets.append("state = ?")
            params.append(u.state.value)
        for field in _PLAIN_UPDATES:
            value = getattr(u, field)
            if value is not None:
                sets.append(f"{field} = ?")
                params.append(value)
        if u.idle is not None:
            sets.append("idle_since = ?")
            params.append(u.time if u.idle else None)
        if sets:
            params.append(u.pilot_id)
            conn.execute(f"UPDATE pilots SET {', '.join(sets)} WHERE pilot_id = ?", params)


def get_pilot(conn: sqlite3.Connection, pilot_id: str) -> PilotRecord | None:
    row = conn.execute(
        f"SELECT {_PILOT_COLUMNS} FROM pilots WHERE pilot_id = ?", (pilot_id,)
    ).fetchone()
    return None if row is None else _pilot(row)


def list_pilots(conn: sqlite3.Connection, where: PilotFilter) -> list[PilotRecord]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("site", where.site),
        ("queue", where.queue),
        ("director", where.director),
        ("pilot_id", where.pilot_id),
    ):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.states:
        clauses.append(f"state IN ({', '.join('?' for _ in where.states)})")
        params += [s.value for s in where.states]
    if where.sites:
        clauses.append(f"site IN ({', '.join('?' for _ in where.sites)})")
        params += list(where.sites)
    sql = f"SELECT {_PILOT_COLUMNS} FROM pilots"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY submitted, pilot_id"
    if where.limit > 0:
        sql += " LIMIT ?"
        params.append(where.limit)
    return [_pilot(r) for r in conn.execute(sql, params)]


# ---- directors' queue reports -------------------------------------------------------------------

_QUEUE_COLUMNS = (
    "director, queue, site, ce, backend, health, error, skip_cycles_left, failing_since, "
    "submitted_last_cycle, reported"
)


def upsert_queue_statuses(conn: sqlite3.Connection, statuses: Sequence[QueueStatusRecord]) -> None:
    conn.executemany(
        f"INSERT OR REPLACE INTO director_queues ({_QUEUE_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                q.director,
                q.queue,
                q.site,
                q.ce,
                q.backend,
                q.health,
                q.error,
                q.skip_cycles_left,
                q.failing_since,
                q.submitted_last_cycle,
                q.reported,
            )
            for q in statuses
        ],
    )


def list_queue_statuses(
    conn: sqlite3.Connection, where: QueueStatusFilter
) -> list[QueueStatusRecord]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("site", where.site), ("director", where.director)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.sites:
        clauses.append(f"site IN ({', '.join('?' for _ in where.sites)})")
        params += list(where.sites)
    sql = f"SELECT {_QUEUE_COLUMNS} FROM director_queues"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY site, director, queue"
    return [
        QueueStatusRecord(
            director=r[0],
            queue=r[1],
            site=r[2],
            ce=r[3],
            backend=r[4],
            health=r[5],
            error=r[6],
            skip_cycles_left=r[7],
            failing_since=r[8],
            submitted_last_cycle=r[9],
            reported=r[10],
        )
        for r in conn.execute(sql, params)
    ]
