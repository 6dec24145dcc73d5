"""Multi-table job writes of the SQLite store: transitions (with the slots they release) and
the final report of an attempt. Plain functions inside an open transaction, like _sqlite_jobs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from central.store import _sqlite_data as data_sql
from central.store import _sqlite_jobs as job_sql
from central.store.records import (
    ActiveSlot,
    FileRecord,
    JobRecord,
    NewFailoverRequest,
    OutputRecord,
    Transition,
)


def finish_attempt(
    conn: sqlite3.Connection,
    transition: Transition,
    outputs: Sequence[OutputRecord],
    files: Sequence[FileRecord],
    requests: Sequence[NewFailoverRequest],
) -> tuple[JobRecord | None, list[ActiveSlot]]:
    released: list[ActiveSlot] = []
    job = job_sql.apply_transition(conn, transition, released)
    if job is None:
        return None, []
    job_sql.insert_outputs(conn, outputs)
    # A catalog conflict raises here and the caller's write is rolled back as a whole.
    data_sql.add_files(conn, files)
    data_sql.add_failover_requests(conn, requests, transition.time)
    return job, released


def apply_transitions(
    conn: sqlite3.Connection, transitions: Sequence[Transition]
) -> tuple[list[JobRecord | None], list[ActiveSlot]]:
    released: list[ActiveSlot] = []
    return [job_sql.apply_transition(conn, t, released) for t in transitions], released
