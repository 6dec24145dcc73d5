"""The director's local cache of its pilots: pilot id -> backend reference, cleanup timing.

Central is the source of truth: its pilot record is written before submission, and the
backend's reference is sent with `UpdatePilots` right after. The journal remembers the same
references on the director's disk, so that (1) a reference central did not get (central
unreachable just after submission) is sent again next cycle, and (2) pilots that left
central's list of live pilots are still known when their backend files are due for cleanup.
Losing it costs only (2) for pilots that ended meanwhile: a director restarted without it
takes its live pilots' references from `ListPilots` and rebuilds the cache from them.

The file is small (live pilots plus those awaiting cleanup) and rewritten atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import msgspec


class JournalEntry(msgspec.Struct, kw_only=True):
    pilot_id: str
    queue: str
    submitted: float
    # Empty only in journals written before references went to central.
    reference: str = ""
    # When the pilot was first seen in a final state; cleanup counts from here.
    final_at: float | None = None
    # The pilot's log tail went to central (fetched once its backend saw it end).
    log_sent: bool = False


class _JournalFile(msgspec.Struct):
    version: int
    pilots: list[JournalEntry]


class JournalError(RuntimeError):
    """The journal file exists but cannot be read or written."""


class Journal:
    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, JournalEntry] = {}

    @classmethod
    def load(cls, path: Path) -> Journal:
        journal = cls(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return journal
        except OSError as exc:
            raise JournalError(f"cannot read pilot journal {path}: {exc}") from exc
        try:
            data = msgspec.json.decode(raw, type=_JournalFile)
        except msgspec.DecodeError as exc:
            raise JournalError(f"corrupt pilot journal {path}: {exc}") from exc
        if data.version != cls.VERSION:
            raise JournalError(f"pilot journal {path} has unsupported version {data.version}")
        journal._entries = {e.pilot_id: e for e in data.pilots}
        return journal

    def save(self) -> None:
        data = _JournalFile(self.VERSION, list(self._entries.values()))
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                fh.write(msgspec.json.encode(data))
                fh.flush()
                # Data on disk before the rename, or a crash could leave an empty file.
                os.fsync(fh.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            raise JournalError(f"cannot write pilot journal {self.path}: {exc}") from exc

    def get(self, pilot_id: str) -> JournalEntry | None:
        return self._entries.get(pilot_id)

    def entries(self) -> list[JournalEntry]:
        return list(self._entries.values())

    def add(self, pilot_id: str, queue: str, submitted: float, reference: str) -> None:
        """Remember a submitted pilot; an entry already there keeps its cleanup timing."""
        entry = self._entries.get(pilot_id)
        if entry is None:
            self._entries[pilot_id] = JournalEntry(
                pilot_id=pilot_id, queue=queue, submitted=submitted, reference=reference
            )
        else:
            entry.reference = reference

    def mark_final(self, pilot_id: str, now: float) -> None:
        entry = self._entries.get(pilot_id)
        if entry is not None and entry.final_at is None:
            entry.final_at = now

    def mark_log_sent(self, pilot_id: str) -> None:
        entry = self._entries.get(pilot_id)
        if entry is not None:
            entry.log_sent = True

    def remove(self, pilot_ids: Iterable[str]) -> None:
        for pilot_id in pilot_ids:
            self._entries.pop(pilot_id, None)
