"""Data tables of the SQLite store: storage elements, the replica catalog, failover requests and
sandbox metadata. Plain functions on a connection inside a transaction opened by SqliteStore."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from central.store._sqlite_jobs import json_list
from central.store.records import (
    OPERATIONS,
    FailoverRequestRecord,
    FileRecord,
    NewFailoverRequest,
    SandboxRecord,
    StorageElementRecord,
)

FAILOVER_STATUSES = ("Waiting", "Done", "Failed")


def _row_id(cur: sqlite3.Cursor) -> int:
    if cur.lastrowid is None:
        raise RuntimeError("sqlite returned no row id for an INSERT")
    return cur.lastrowid


# ---- storage elements ------------------------------------------------------------------------


def upsert_storage_elements(conn: sqlite3.Connection, ses: Sequence[StorageElementRecord]) -> None:
    # An admin's read/write switch survives a restart with the same configuration; only a
    # configuration that itself changed the flag overrides it.
    conn.executemany(
        "INSERT INTO storage_elements "
        "(name, site, url, read_allowed, write_allowed, config_read, config_write) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?5) ON CONFLICT (name) DO UPDATE SET "
        "site = excluded.site, url = excluded.url, "
        "read_allowed = CASE WHEN excluded.config_read != config_read "
        "THEN excluded.config_read ELSE read_allowed END, "
        "write_allowed = CASE WHEN excluded.config_write != config_write "
        "THEN excluded.config_write ELSE write_allowed END, "
        "config_read = excluded.config_read, config_write = excluded.config_write",
        ((s.name, s.site, s.url, int(s.read_allowed), int(s.write_allowed)) for s in ses),
    )


def list_storage_elements(conn: sqlite3.Connection) -> list[StorageElementRecord]:
    rows = conn.execute(
        "SELECT name, site, url, read_allowed, write_allowed FROM storage_elements ORDER BY name"
    )
    return [
        StorageElementRecord(
            name=r[0], site=r[1], url=r[2], read_allowed=bool(r[3]), write_allowed=bool(r[4])
        )
        for r in rows
    ]


def set_storage_element_status(
    conn: sqlite3.Connection, name: str, read: bool, write: bool
) -> bool:
    cur = conn.execute(
        "UPDATE storage_elements SET read_allowed = ?, write_allowed = ? WHERE name = ?",
        (int(read), int(write), name),
    )
    return cur.rowcount > 0


# ---- replica catalog -------------------------------------------------------------------------


def _same_checksum(a: str, b: str) -> bool:
    # Tools differ in case and zero padding of the 8 hex digits.
    return a.strip().lower().lstrip("0") == b.strip().lower().lstrip("0")


def add_files(conn: sqlite3.Connection, files: Sequence[FileRecord]) -> None:
    for f in files:
        row = conn.execute(
            "SELECT file_id, size, adler32 FROM files WHERE lfn = ?", (f.lfn,)
        ).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO files (lfn, size, adler32, job_id) VALUES (?, ?, ?, ?)",
                (f.lfn, f.size, f.adler32, f.job_id),
            )
            file_id = _row_id(cur)
        else:
            file_id, size, adler32 = row
            if size != f.size or not _same_checksum(adler32, f.adler32):
                raise ValueError(
                    f"{f.lfn} is already registered with size {size} and adler32 {adler32}, "
                    f"not size {f.size} and adler32 {f.adler32}"
                )
        # Registering a copy again means it was written and verified anew: no longer suspect.
        conn.executemany(
            "INSERT INTO replicas (file_id, se) VALUES (?, ?) "
            "ON CONFLICT DO UPDATE SET suspect = ''",
            ((file_id, se) for se in f.ses),
        )


def _files(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[FileRecord]:
    # A correlated subquery (not a join + GROUP BY) keeps the LFN index usable for the range
    # in list_files; group_concat's order is unspecified, so SEs are sorted in Python.
    rows = conn.execute(
        "SELECT f.lfn, f.size, f.adler32, f.job_id, "
        "(SELECT group_concat(r.se, char(10)) FROM replicas r WHERE r.file_id = f.file_id), "
        "(SELECT group_concat(r.se || char(9) || r.suspect, char(10)) FROM replicas r "
        " WHERE r.file_id = f.file_id AND r.suspect != '') "
        f"FROM files f WHERE {where} ORDER BY f.lfn",
        params,
    )
    return [
        FileRecord(
            lfn=r[0],
            size=r[1],
            adler32=r[2],
            job_id=r[3],
            ses=tuple(sorted(r[4].split("\n"))) if r[4] else (),
            suspects=dict(line.split("\t", 1) for line in r[5].split("\n")) if r[5] else {},
        )
        for r in rows
    ]


def get_files(conn: sqlite3.Connection, lfns: Sequence[str]) -> dict[str, FileRecord]:
    if not lfns:
        return {}
    found = _files(conn, "f.lfn IN (SELECT value FROM json_each(?))", (json_list(lfns),))
    return {f.lfn: f for f in found}


def list_files(conn: sqlite3.Connection, lpn: str) -> list[FileRecord]:
    # A range on the unique index: every name starting with "<lpn>/" sorts between
    # "<lpn>/" and "<lpn>0" ('0' follows '/'), so "/a/b" never matches "/a/bc".
    directory = lpn.rstrip("/")
    return _files(conn, "f.lfn >= ? AND f.lfn < ?", (directory + "/", directory + "0"))


def remove_replica(conn: sqlite3.Connection, lfn: str, se: str) -> None:
    # The file entry stays when its last replica goes: its size and checksum are still true.
    conn.execute(
        "DELETE FROM replicas WHERE se = ? AND file_id = (SELECT file_id FROM files WHERE lfn = ?)",
        (se, lfn),
    )


def remove_file(conn: sqlite3.Connection, lfn: str) -> bool:
    """The catalog entry and its replica rows; False when the LFN was not there."""
    return conn.execute("DELETE FROM files WHERE lfn = ?", (lfn,)).rowcount > 0


def set_replica_suspect(conn: sqlite3.Connection, lfn: str, se: str, reason: str) -> bool:
    """Mark (reason) or clear ("") one replica; False when there is no such replica."""
    cur = conn.execute(
        "UPDATE replicas SET suspect = ? WHERE se = ? "
        "AND file_id = (SELECT file_id FROM files WHERE lfn = ?)",
        (reason, se, lfn),
    )
    return cur.rowcount > 0


# ---- failover requests -----------------------------------------------------------------------

_REQUEST_COLUMNS = (
    "request_id, job_id, lfn, source_se, target_se, status, attempts, last_error, "
    "created, updated, next_try, operation, priority, owner"
)


def _request(r: tuple[Any, ...]) -> FailoverRequestRecord:
    return FailoverRequestRecord(
        request_id=r[0],
        job_id=r[1],
        lfn=r[2],
        source_se=r[3],
        target_se=r[4],
        status=r[5],
        attempts=r[6],
        last_error=r[7],
        created=r[8],
        updated=r[9],
        next_try=r[10],
        operation=r[11],
        priority=r[12],
        owner=r[13],
    )


def add_failover_requests(
    conn: sqlite3.Connection, requests: Sequence[NewFailoverRequest], now: float
) -> list[int]:
    ids: list[int] = []
    for r in requests:
        if r.operation not in OPERATIONS:
            raise ValueError(
                f"unknown data request operation {r.operation!r} (one of {', '.join(OPERATIONS)})"
            )
        cur = conn.execute(
            "INSERT INTO failover_requests (job_id, lfn, source_se, target_se, status, "
            "attempts, last_error, created, updated, next_try, operation, priority, owner) "
            "VALUES (?, ?, ?, ?, 'Waiting', 0, '', ?, ?, ?, ?, ?, ?)",
            (
                r.job_id,
                r.lfn,
                r.source_se,
                r.target_se,
                now,
                now,
                now,
                r.operation,
                r.priority,
                r.owner,
            ),
        )
        ids.append(_row_id(cur))
    return ids


def due_failover_requests(
    conn: sqlite3.Connection, now: float, limit: int
) -> list[FailoverRequestRecord]:
    # Only the oldest waiting request of each LFN may run: a removal made after a replication
    # waits for it (and a replication for an earlier removal), so they never race.
    sql = (
        f"SELECT {_REQUEST_COLUMNS} FROM failover_requests r "
        "WHERE status = 'Waiting' AND next_try <= ? AND NOT EXISTS ("
        " SELECT 1 FROM failover_requests e WHERE e.lfn = r.lfn AND e.status = 'Waiting'"
        " AND e.request_id < r.request_id) "
        "ORDER BY priority DESC, created, request_id"
    )
    params: list[Any] = [now]
    if limit > 0:
        sql += " LIMIT ?"
        params.append(limit)
    return [_request(r) for r in conn.execute(sql, params)]


def update_failover_request(
    conn: sqlite3.Connection,
    request_id: int,
    *,
    status: str,
    attempts: int,
    last_error: str,
    next_try: float,
    now: float,
) -> None:
    if status not in FAILOVER_STATUSES:
        raise ValueError(
            f"unknown failover request status {status!r} (one of {', '.join(FAILOVER_STATUSES)})"
        )
    cur = conn.execute(
        "UPDATE failover_requests SET status = ?, attempts = ?, last_error = ?, next_try = ?, "
        "updated = ? WHERE request_id = ?",
        (status, attempts, last_error, next_try, now, request_id),
    )
    if cur.rowcount == 0:
        raise KeyError(f"unknown failover request {request_id}")


def list_failover_requests(
    conn: sqlite3.Connection,
    job_id: int,
    status: str,
    request_ids: Sequence[int] = (),
    lfn: str = "",
) -> list[FailoverRequestRecord]:
    clauses: list[str] = []
    params: list[Any] = []
    if job_id:
        clauses.append("job_id = ?")
        params.append(job_id)
    if status:
        clauses.append("status = ?")
        params.append(status)
    if request_ids:
        clauses.append("request_id IN (SELECT value FROM json_each(?))")
        params.append(json_list(request_ids))
    if lfn:
        clauses.append("lfn = ?")
        params.append(lfn)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {_REQUEST_COLUMNS} FROM failover_requests{where} ORDER BY request_id"
    return [_request(r) for r in conn.execute(sql, params)]


# ---- sandbox metadata ------------------------------------------------------------------------


def add_sandbox(conn: sqlite3.Connection, s: SandboxRecord) -> None:
    conn.execute(
        "INSERT INTO sandboxes (sandbox_id, size, kind, owner, job_id, attempt, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sandbox_id) DO NOTHING",
        (s.sandbox_id, s.size, s.kind, s.owner, s.job_id, s.attempt, s.created),
    )


def get_sandbox(conn: sqlite3.Connection, sandbox_id: str) -> SandboxRecord | None:
    r = conn.execute(
        "SELECT sandbox_id, size, kind, owner, job_id, attempt, created FROM sandboxes "
        "WHERE sandbox_id = ?",
        (sandbox_id,),
    ).fetchone()
    if r is None:
        return None
    return SandboxRecord(
        sandbox_id=r[0], size=r[1], kind=r[2], owner=r[3], job_id=r[4], attempt=r[5], created=r[6]
    )
