"""Job tables of the SQLite store: plain functions on a connection inside an open transaction.

SqliteStore (sqlite.py) owns the connection and the transactions; nothing here commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from central.models.job_states import ACTIVE_STATES, JobStatus, can_transition
from central.store.records import (
    ActiveSlot,
    CompactWaiting,
    HeartbeatRecord,
    HistoryRecord,
    JobFilter,
    JobRecord,
    NewJob,
    OutputRecord,
    StatusCountRecord,
    Transition,
    WaitingJob,
)
from gridpilot.logs import get_logger

log = get_logger(__name__)

_JOB_COLUMNS = (
    "job_id, spec, requirements, project, owner, owner_group, job_name, priority, job_type, "
    "status, minor_status, application_status, site, pilot_id, attempt, reschedule_count, "
    "submitted, updated, last_heartbeat, output_sandbox, kill_requested"
)

_WAITING = JobStatus.WAITING.value
_ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATES))
_DELETED = JobStatus.DELETED.value


def json_list(values: Sequence[Any]) -> str:
    """One parameter holding a whole list, read back with json_each: no variable limit."""
    return json.dumps(list(values))


def _job(row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        job_id=row[0],
        spec=row[1],
        requirements=row[2],
        project=row[3],
        owner=row[4],
        group=row[5],
        job_name=row[6],
        priority=row[7],
        job_type=row[8],
        status=JobStatus(row[9]),
        minor_status=row[10],
        application_status=row[11],
        site=row[12],
        pilot_id=row[13],
        attempt=row[14],
        reschedule_count=row[15],
        submitted=row[16],
        updated=row[17],
        last_heartbeat=row[18],
        output_sandbox=row[19],
        kill_requested=bool(row[20]),
    )


def insert_jobs(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float) -> list[int]:
    if not jobs:
        return []
    # Ids are assigned here, inside the write transaction, so they are known without one
    # round trip per row and stay contiguous even if another process shares the file.
    (last,) = conn.execute(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0), "
        "coalesce((SELECT max(job_id) FROM jobs), 0))"
    ).fetchone()
    first = int(last) + 1
    ids = list(range(first, first + len(jobs)))
    tq_ids = intern_task_queues(conn, {j.requirements for j in jobs})
    conn.executemany(
        "INSERT INTO jobs (job_id, spec, requirements, project, owner, owner_group, job_name, "
        "priority, job_type, status, minor_status, submitted, updated, tq_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?)",
        (
            (
                job_id,
                j.spec,
                j.requirements,
                j.project,
                j.owner,
                j.group,
                j.job_name,
                j.priority,
                j.job_type,
                _WAITING,
                now,
                now,
                tq_ids[j.requirements],
            )
            for job_id, j in zip(ids, jobs, strict=True)
        ),
    )
    conn.executemany(
        "INSERT INTO job_history (job_id, status, minor_status, application_status, time, source) "
        "VALUES (?, ?, '', '', ?, 'JobStore')",
        ((job_id, _WAITING, now) for job_id in ids),
    )
    return ids


def intern_task_queues(conn: sqlite3.Connection, keys: set[bytes]) -> dict[bytes, int]:
    """The task-queue id of each distinct requirements blob, creating the missing ones.

    One lookup per distinct key, not per job: a bulk submission has a handful of shapes."""
    ids: dict[bytes, int] = {}
    for key in keys:
        conn.execute("INSERT OR IGNORE INTO task_queues (requirements) VALUES (?)", (key,))
        (tq_id,) = conn.execute(
            "SELECT tq_id FROM task_queues WHERE requirements = ?", (key,)
        ).fetchone()
        ids[key] = int(tq_id)
    return ids


def get_job(conn: sqlite3.Connection, job_id: int) -> JobRecord | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else _job(row)


def _where(where: JobFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("project", where.project),
        ("owner", where.owner),
        ("site", where.site),
    ):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.job_ids:
        clauses.append("job_id IN (SELECT value FROM json_each(?))")
        params.append(json_list(where.job_ids))
    if where.statuses:
        clauses.append("status IN (SELECT value FROM json_each(?))")
        params.append(json_list([s.value for s in where.statuses]))
    if JobStatus.DELETED not in where.statuses:
        clauses.append("status != ?")
        params.append(_DELETED)
    if where.scope is not None:
        reach = ["owner = ?"]
        params.append(where.scope.owner)
        for column, value in (
            ("owner_group", where.scope.group),
            ("job_type", where.scope.job_type),
        ):
            if value:
                reach.append(f"{column} = ?")
                params.append(value)
        clauses.append("(" + " OR ".join(reach) + ")")
    return " AND ".join(clauses), params


def list_jobs(conn: sqlite3.Connection, where: JobFilter, limit: int) -> list[JobRecord]:
    clause, params = _where(where)
    sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {clause} ORDER BY job_id"
    if limit > 0:
        sql += " LIMIT ?"
        params.append(limit)
    return [_job(row) for row in conn.execute(sql, params)]


def job_history(conn: sqlite3.Connection, job_id: int) -> list[HistoryRecord]:
    rows = conn.execute(
        "SELECT status, minor_status, application_status, time, source FROM job_history "
        "WHERE job_id = ? ORDER BY history_id",
        (job_id,),
    )
    return [
        HistoryRecord(
            status=JobStatus(r[0]),
            minor_status=r[1],
            application_status=r[2],
            time=r[3],
            source=r[4],
        )
        for r in rows
    ]


# Transition fields written only when not None, in the order of their SET clauses.
_OPTIONAL_FIELDS = (
    "application_status",
    "site",
    "pilot_id",
    "attempt",
    "reschedule_count",
    "output_sandbox",
    "kill_requested",
)


def apply_transition(
    conn: sqlite3.Connection, t: Transition, released: list[ActiveSlot] | None = None
) -> JobRecord | None:
    """Apply one transition. A job leaving the active states appends the slot it held at its
    site to `released` (read before the change: rescheduling clears the site)."""
    row = conn.execute(
        "SELECT status, attempt, site, job_type, owner, owner_group FROM jobs WHERE job_id = ?",
        (t.job_id,),
    ).fetchone()
    if row is None:
        return None
    current, attempt = JobStatus(row[0]), int(row[1])
    if t.expect and current not in t.expect:
        return None
    if t.expect_attempt is not None and attempt != t.expect_attempt:
        return None
    # The state table is the authority; a change it forbids is not applied (same-status
    # updates, e.g. a new minor status, are always allowed).
    if current != t.status and not can_transition(current, t.status):
        log.warning(
            "job.transition_refused",
            job_id=t.job_id,
            old=current.value,
            new=t.status.value,
            source=t.source,
        )
        return None
    sets = ["status = ?", "minor_status = ?", "updated = ?"]
    params: list[Any] = [t.status.value, t.minor_status, t.time]
    for field in _OPTIONAL_FIELDS:
        value = getattr(t, field)
        if value is not None:
            sets.append(f"{field} = ?")
            params.append(int(value) if isinstance(value, bool) else value)
    if t.reset_heartbeat:
        sets.append("last_heartbeat = NULL")
    params.append(t.job_id)
    conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE job_id = ?", params)
    conn.execute(
        "INSERT INTO job_history (job_id, status, minor_status, application_status, time, source) "
        "SELECT job_id, status, minor_status, application_status, ?, ? FROM jobs WHERE job_id = ?",
        (t.time, t.source, t.job_id),
    )
    if released is not None and current in ACTIVE_STATES and t.status not in ACTIVE_STATES:
        released.append((row[2], row[3], row[4], row[5]))
    return get_job(conn, t.job_id)


def insert_outputs(conn: sqlite3.Connection, outputs: Sequence[OutputRecord]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO job_outputs (job_id, attempt, lfn, se, size, adler32) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        ((o.job_id, o.attempt, o.lfn, o.se, o.size, o.adler32) for o in outputs),
    )


def job_outputs(conn: sqlite3.Connection, job_id: int) -> list[OutputRecord]:
    rows = conn.execute(
        "SELECT o.job_id, o.attempt, o.lfn, o.se, o.size, o.adler32 FROM job_outputs o "
        "JOIN jobs j ON j.job_id = o.job_id AND j.attempt = o.attempt "
        "WHERE o.job_id = ? ORDER BY o.lfn",
        (job_id,),
    )
    return [
        OutputRecord(job_id=r[0], attempt=r[1], lfn=r[2], se=r[3], size=r[4], adler32=r[5])
        for r in rows
    ]


def waiting_jobs(conn: sqlite3.Connection) -> list[WaitingJob]:
    rows = conn.execute(
        "SELECT job_id, priority, owner, owner_group, requirements FROM jobs "
        "WHERE status = ? ORDER BY job_id",
        (_WAITING,),
    )
    return [
        WaitingJob(job_id=r[0], priority=r[1], owner=r[2], group=r[3], requirements=r[4])
        for r in rows
    ]


def jobs_quiet_since(
    conn: sqlite3.Connection, statuses: Sequence[JobStatus], cutoff: float
) -> list[JobRecord]:
    if not statuses:
        return []
    rows = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs "
        "WHERE status IN (SELECT value FROM json_each(?)) "
        "AND coalesce(last_heartbeat, updated) < ? ORDER BY job_id",
        (json_list([s.value for s in statuses]), cutoff),
    )
    return [_job(row) for row in rows]


_encode_tail = msgspec.json.Encoder().encode
_decode_tail = msgspec.json.Decoder(tuple[str, ...]).decode


def record_heartbeats(conn: sqlite3.Connection, beats: Sequence[HeartbeatRecord]) -> None:
    # The SELECT only yields a row while the job is at the beat's attempt, so a late beat
    # of an old attempt writes nothing; an older beat never replaces a newer one.
    conn.executemany(
        "INSERT INTO heartbeats (job_id, attempt, time, cpu_seconds, wall_seconds, rss_bytes, "
        "disk_free_bytes, load_average, stdout_tail) "
        "SELECT job_id, ?, ?, ?, ?, ?, ?, ?, ? FROM jobs WHERE job_id = ? AND attempt = ? "
        "ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt, time = excluded.time, "
        "cpu_seconds = excluded.cpu_seconds, wall_seconds = excluded.wall_seconds, "
        "rss_bytes = excluded.rss_bytes, disk_free_bytes = excluded.disk_free_bytes, "
        "load_average = excluded.load_average, stdout_tail = excluded.stdout_tail "
        "WHERE excluded.attempt != heartbeats.attempt OR excluded.time >= heartbeats.time",
        (
            (
                b.attempt,
                b.time,
                b.cpu_seconds,
                b.wall_seconds,
                b.rss_bytes,
                b.disk_free_bytes,
                b.load_average,
                _encode_tail(b.stdout_tail).decode(),
                b.job_id,
                b.attempt,
            )
            for b in beats
        ),
    )
    conn.executemany(
        "UPDATE jobs SET last_heartbeat = max(coalesce(last_heartbeat, ?), ?) "
        "WHERE job_id = ? AND attempt = ?",
        ((b.time, b.time, b.job_id, b.attempt) for b in beats),
    )


def last_heartbeat(conn: sqlite3.Connection, job_id: int) -> HeartbeatRecord | None:
    r = conn.execute(
        "SELECT job_id, attempt, time, cpu_seconds, wall_seconds, rss_bytes, disk_free_bytes, "
        "load_average, stdout_tail FROM heartbeats WHERE job_id = ?",
        (job_id,),
    ).fetchone()
    if r is None:
        return None
    return HeartbeatRecord(
        job_id=r[0],
        attempt=r[1],
        time=r[2],
        cpu_seconds=r[3],
        wall_seconds=r[4],
        rss_bytes=r[5],
        disk_free_bytes=r[6],
        load_average=r[7],
        stdout_tail=_decode_tail(r[8]),
    )


def summarize_projects(conn: sqlite3.Connection, where: JobFilter) -> list[StatusCountRecord]:
    clause, params = _where(where)
    rows = conn.execute(
        "SELECT project, owner, status, count(*), min(submitted) FROM jobs "
        f"WHERE {clause} GROUP BY project, owner, status ORDER BY project, owner, status",
        params,
    )
    return [
        StatusCountRecord(
            project=r[0], owner=r[1], status=JobStatus(r[2]), count=r[3], first_submitted=r[4]
        )
        for r in rows
    ]


def waiting_jobs_compact(conn: sqlite3.Connection) -> CompactWaiting:
    # The partial covering index answers this without touching the jobs table; its WHERE must
    # be spelled literally (a bound parameter cannot prove the index applies).
    rows: list[tuple[int, int, int]] = conn.execute(
        "SELECT job_id, priority, tq_id FROM jobs INDEXED BY jobs_waiting_compact "
        "WHERE status = 'Waiting' ORDER BY job_id"
    ).fetchall()
    used = {r[2] for r in rows}
    queues = {
        int(r[0]): bytes(r[1])
        for r in conn.execute("SELECT tq_id, requirements FROM task_queues")
        if r[0] in used
    }
    return rows, queues


def running_jobs_for_limits(conn: sqlite3.Connection) -> list[ActiveSlot]:
    rows = conn.execute(
        "SELECT site, job_type, owner, owner_group FROM jobs "
        "WHERE status IN (SELECT value FROM json_each(?))",
        (json_list(_ACTIVE),),
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]
