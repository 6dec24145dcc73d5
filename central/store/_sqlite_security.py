"""Security state of the SQLite store: revocations, spent registration tokens, bans."""

from __future__ import annotations

import sqlite3

from central.store.records import BanRecord, RevocationRecord

# Ban tables by kind; the name is never caller text, so building SQL from it is safe.
_BAN_TABLES = {"site": "site_bans", "user": "user_bans"}


def add_revocation(conn: sqlite3.Connection, revocation: RevocationRecord) -> RevocationRecord:
    """Insert, or move an existing revocation of the same target to the later time (a second
    revocation of a user also refuses the tokens issued since the first)."""
    conn.execute(
        "INSERT INTO revocations (kind, value, reason, created) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (kind, value) DO UPDATE SET reason = excluded.reason, "
        "created = max(created, excluded.created)",
        (revocation.kind, revocation.value, revocation.reason, revocation.created),
    )
    row = conn.execute(
        "SELECT kind, value, reason, created FROM revocations WHERE kind = ? AND value = ?",
        (revocation.kind, revocation.value),
    ).fetchone()
    return RevocationRecord(kind=row[0], value=row[1], reason=row[2], created=row[3])


def list_revocations(conn: sqlite3.Connection) -> list[RevocationRecord]:
    rows = conn.execute(
        "SELECT kind, value, reason, created FROM revocations ORDER BY created, kind, value"
    )
    return [RevocationRecord(kind=r[0], value=r[1], reason=r[2], created=r[3]) for r in rows]


def consume_registration(conn: sqlite3.Connection, jti: str, expires: float) -> bool:
    """Record a registration token as spent; False when it was spent before."""
    cursor = conn.execute(
        "INSERT INTO used_registrations (jti, expires) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING",
        (jti, expires),
    )
    return cursor.rowcount == 1


def used_registrations(conn: sqlite3.Connection, now: float) -> dict[str, float]:
    rows = conn.execute("SELECT jti, expires FROM used_registrations WHERE expires >= ?", (now,))
    return {r[0]: r[1] for r in rows}


def prune_registrations(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute("DELETE FROM used_registrations WHERE expires < ?", (now,)).rowcount


def set_ban(conn: sqlite3.Connection, kind: str, ban: BanRecord) -> None:
    table = _BAN_TABLES[kind]
    conn.execute(
        f"INSERT INTO {table} (name, banned, reason, updated) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET banned = excluded.banned, reason = excluded.reason, "
        "updated = excluded.updated",
        (ban.name, int(ban.banned), ban.reason, ban.updated),
    )


def list_bans(conn: sqlite3.Connection, kind: str) -> list[BanRecord]:
    table = _BAN_TABLES[kind]
    rows = conn.execute(f"SELECT name, banned, reason, updated FROM {table} ORDER BY name")
    return [BanRecord(name=r[0], banned=bool(r[1]), reason=r[2], updated=r[3]) for r in rows]
