"""SE health (what the probe agent found) and learned access costs of the SQLite store.
Plain functions on a connection inside a transaction opened by SqliteStore."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from central.store.records import SECostRecord, SEHealthRecord

_HEALTH_COLUMNS = (
    "se, available, consecutive_failures, last_probe, last_ok, last_error, total_bytes, "
    "free_bytes, probe_seconds"
)


def put_se_health(conn: sqlite3.Connection, health: SEHealthRecord) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO se_health ({_HEALTH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            health.se,
            int(health.available),
            health.consecutive_failures,
            health.last_probe,
            health.last_ok,
            health.last_error,
            health.total_bytes,
            health.free_bytes,
            health.probe_seconds,
        ),
    )


def list_se_health(conn: sqlite3.Connection) -> list[SEHealthRecord]:
    rows = conn.execute(f"SELECT {_HEALTH_COLUMNS} FROM se_health ORDER BY se")
    return [
        SEHealthRecord(
            se=r[0],
            available=bool(r[1]),
            consecutive_failures=r[2],
            last_probe=r[3],
            last_ok=r[4],
            last_error=r[5],
            total_bytes=r[6],
            free_bytes=r[7],
            probe_seconds=r[8],
        )
        for r in rows
    ]


def put_se_costs(conn: sqlite3.Connection, costs: Sequence[SECostRecord]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO se_costs (site, se, cost, samples, failures, updated) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        ((c.site, c.se, c.cost, c.samples, c.failures, c.updated) for c in costs),
    )


def list_se_costs(conn: sqlite3.Connection) -> list[SECostRecord]:
    rows = conn.execute(
        "SELECT site, se, cost, samples, failures, updated FROM se_costs ORDER BY site, se"
    )
    return [
        SECostRecord(site=r[0], se=r[1], cost=r[2], samples=r[3], failures=r[4], updated=r[5])
        for r in rows
    ]
