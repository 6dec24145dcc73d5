"""The SQLite schema of central's store and its migrations.

The schema version lives in `PRAGMA user_version`. Migration N takes a database at version N-1
to version N; a fresh database runs them all. To change the schema, append a migration (never
edit a released one) and bump nothing else: SCHEMA_VERSION follows the list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from gridpilot.logs import get_logger

log = get_logger(__name__)

# Version 1: the first schema. Statuses and states are stored as their string values.
_V1: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        job_id INTEGER PRIMARY KEY AUTOINCREMENT,
        spec BLOB NOT NULL,
        requirements BLOB NOT NULL,
        project TEXT NOT NULL,
        owner TEXT NOT NULL,
        owner_group TEXT NOT NULL,
        job_name TEXT NOT NULL,
        priority INTEGER NOT NULL,
        job_type TEXT NOT NULL,
        status TEXT NOT NULL,
        minor_status TEXT NOT NULL DEFAULT '',
        application_status TEXT NOT NULL DEFAULT '',
        site TEXT NOT NULL DEFAULT '',
        pilot_id TEXT NOT NULL DEFAULT '',
        attempt INTEGER NOT NULL DEFAULT 1,
        reschedule_count INTEGER NOT NULL DEFAULT 0,
        submitted REAL NOT NULL,
        updated REAL NOT NULL,
        last_heartbeat REAL,
        output_sandbox TEXT NOT NULL DEFAULT '',
        kill_requested INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX jobs_status ON jobs (status)",
    "CREATE INDEX jobs_project ON jobs (project)",
    "CREATE INDEX jobs_owner ON jobs (owner)",
    "CREATE INDEX jobs_site ON jobs (site)",
    "CREATE INDEX jobs_pilot_id ON jobs (pilot_id)",
    """
    CREATE TABLE job_history (
        history_id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (job_id),
        status TEXT NOT NULL,
        minor_status TEXT NOT NULL,
        application_status TEXT NOT NULL,
        time REAL NOT NULL,
        source TEXT NOT NULL
    )
    """,
    "CREATE INDEX job_history_job_id ON job_history (job_id)",
    """
    CREATE TABLE heartbeats (
        job_id INTEGER PRIMARY KEY REFERENCES jobs (job_id),
        attempt INTEGER NOT NULL,
        time REAL NOT NULL,
        cpu_seconds REAL NOT NULL,
        wall_seconds REAL NOT NULL,
        rss_bytes INTEGER NOT NULL,
        disk_free_bytes INTEGER NOT NULL,
        load_average REAL NOT NULL,
        stdout_tail TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE job_outputs (
        job_id INTEGER NOT NULL REFERENCES jobs (job_id),
        attempt INTEGER NOT NULL,
        lfn TEXT NOT NULL,
        se TEXT NOT NULL,
        size INTEGER NOT NULL,
        adler32 TEXT NOT NULL,
        PRIMARY KEY (job_id, attempt, lfn)
    )
    """,
    """
    CREATE TABLE pilots (
        pilot_id TEXT PRIMARY KEY,
        reference TEXT NOT NULL,
        site TEXT NOT NULL,
        ce TEXT NOT NULL,
        queue TEXT NOT NULL,
        backend TEXT NOT NULL,
        director TEXT NOT NULL,
        state TEXT NOT NULL,
        submitted REAL NOT NULL,
        registered REAL,
        last_heartbeat REAL,
        jobs_run INTEGER NOT NULL DEFAULT 0,
        status_reason TEXT NOT NULL DEFAULT '',
        log_tail TEXT NOT NULL DEFAULT '',
        idle_since REAL,
        state_changed REAL NOT NULL
    )
    """,
    "CREATE INDEX pilots_site_queue ON pilots (site, queue)",
    "CREATE INDEX pilots_state ON pilots (state)",
    "CREATE INDEX pilots_director ON pilots (director)",
    """
    CREATE TABLE storage_elements (
        name TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        url TEXT NOT NULL,
        read_allowed INTEGER NOT NULL,
        write_allowed INTEGER NOT NULL,
        -- What the configuration last said, to tell an admin's change from a config change.
        config_read INTEGER NOT NULL,
        config_write INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE files (
        file_id INTEGER PRIMARY KEY,
        lfn TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        adler32 TEXT NOT NULL,
        job_id INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE replicas (
        file_id INTEGER NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,
        se TEXT NOT NULL,
        PRIMARY KEY (file_id, se)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE failover_requests (
        request_id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL,
        lfn TEXT NOT NULL,
        source_se TEXT NOT NULL,
        target_se TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        updated REAL NOT NULL,
        next_try REAL NOT NULL
    )
    """,
    "CREATE INDEX failover_requests_due ON failover_requests (status, next_try)",
    "CREATE INDEX failover_requests_job_id ON failover_requests (job_id)",
    """
    CREATE TABLE sandboxes (
        sandbox_id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        kind TEXT NOT NULL,
        owner TEXT NOT NULL,
        job_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        created REAL NOT NULL
    )
    """,
)

# Version 2: security state that must survive restarts.
_V2: tuple[str, ...] = (
    """
    CREATE TABLE revocations (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        reason TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (kind, value)
    ) WITHOUT ROWID
    """,
    # Single-use pilot registration tokens already spent, kept until they expire.
    """
    CREATE TABLE used_registrations (
        jti TEXT PRIMARY KEY,
        expires REAL NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX used_registrations_expires ON used_registrations (expires)",
    """
    CREATE TABLE site_bans (
        name TEXT PRIMARY KEY,
        banned INTEGER NOT NULL,
        reason TEXT NOT NULL,
        updated REAL NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE user_bans (
        name TEXT PRIMARY KEY,
        banned INTEGER NOT NULL,
        reason TEXT NOT NULL,
        updated REAL NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX jobs_job_type ON jobs (job_type)",
    "CREATE INDEX jobs_owner_group ON jobs (owner_group)",
)

# Version 3: task queues interned once per distinct requirements, so the matcher restarts from
# (job_id, priority, tq_id) rows without decoding per-job requirements; a partial covering
# index makes that read one scan of the waiting jobs only.
_V3: tuple[str, ...] = (
    """
    CREATE TABLE task_queues (
        tq_id INTEGER PRIMARY KEY,
        requirements BLOB NOT NULL UNIQUE
    )
    """,
    "ALTER TABLE jobs ADD COLUMN tq_id INTEGER NOT NULL DEFAULT 0",
    "INSERT OR IGNORE INTO task_queues (requirements) SELECT DISTINCT requirements FROM jobs",
    """
    UPDATE jobs SET tq_id = (
        SELECT t.tq_id FROM task_queues t WHERE t.requirements = jobs.requirements
    )
    """,
    "CREATE INDEX jobs_waiting_compact ON jobs (job_id, priority, tq_id) WHERE status = 'Waiting'",
)

# Version 4: each director's last report on its queues (a failing queue's error for operators).
_V4: tuple[str, ...] = (
    """
    CREATE TABLE director_queues (
        director TEXT NOT NULL,
        queue TEXT NOT NULL,
        site TEXT NOT NULL,
        ce TEXT NOT NULL,
        backend TEXT NOT NULL,
        health TEXT NOT NULL,
        error TEXT NOT NULL,
        skip_cycles_left INTEGER NOT NULL,
        failing_since REAL,
        submitted_last_cycle INTEGER NOT NULL,
        reported REAL NOT NULL,
        PRIMARY KEY (director, queue)
    ) WITHOUT ROWID
    """,
)

# Version 5: storage elements for real. The health the probe agent measures, the access cost
# each site learns per SE, replicas marked suspect (bad checksum), and data requests that are
# more than failover replications: a priority, an operation, and per-LFN ordering.
_V5: tuple[str, ...] = (
    """
    CREATE TABLE se_health (
        se TEXT PRIMARY KEY,
        available INTEGER NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        last_probe REAL NOT NULL,
        last_ok REAL NOT NULL,
        last_error TEXT NOT NULL,
        total_bytes INTEGER NOT NULL,
        free_bytes INTEGER NOT NULL,
        probe_seconds REAL NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE se_costs (
        site TEXT NOT NULL,
        se TEXT NOT NULL,
        cost REAL NOT NULL,
        samples INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (site, se)
    ) WITHOUT ROWID
    """,
    "ALTER TABLE replicas ADD COLUMN suspect TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE failover_requests ADD COLUMN operation TEXT NOT NULL DEFAULT 'replicate'",
    "ALTER TABLE failover_requests ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE failover_requests ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX failover_requests_lfn ON failover_requests (lfn, status)",
)

Migration = Callable[[sqlite3.Connection], None]


def _statements(ddl: Sequence[str]) -> Migration:
    def apply(conn: sqlite3.Connection) -> None:
        for statement in ddl:
            conn.execute(statement)

    return apply


# MIGRATIONS[i] takes the schema from version i to version i + 1.
MIGRATIONS: tuple[Migration, ...] = (
    _statements(_V1),
    _statements(_V2),
    _statements(_V3),
    _statements(_V4),
    _statements(_V5),
)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaVersionError(RuntimeError):
    """The database was written by a newer gridpilot than this one."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION; each step is its own transaction.

    `conn` must be in autocommit mode (isolation_level=None). Returns the version found.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"database schema version {found} is newer than this gridpilot supports "
            f"({SCHEMA_VERSION}); upgrade gridpilot"
        )
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            # PRAGMA takes no parameters; the value is an int we computed.
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        log.info("store.migrated", to_version=version + 1)
    return found
