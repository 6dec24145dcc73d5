"""The director's durable memory of the pilots it submitted: pilot id -> backend reference.

Central's pilot record is written before submission (so no pilot goes unrecorded), when the
reference is not known yet; `UpdatePilots` cannot set it afterwards. The journal keeps the
reference on the director's disk so monitoring and cleanup survive a director restart. An entry
is written as *pending* before the backend is asked, and gets its reference right after; a
pending entry found at start means the director stopped in between, and the pilot's fate is
unknown to it.

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
    # Empty while pending: recorded in central, not (known to be) submitted yet.
    reference: str = ""
    # When the pilot was first seen in a final state; cleanup counts from here.
    final_at: float | None = None


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
                # Durable before the backend is asked: a crash must not forget a pilot.
                os.fsync(fh.fileno())
            tmp.replace(self.path)
        except OSError as exc:
            raise JournalError(f"cannot write pilot journal {self.path}: {exc}") from exc

    def get(self, pilot_id: str) -> JournalEntry | None:
        return self._entries.get(pilot_id)

    def entries(self) -> list[JournalEntry]:
        return list(self._entries.values())

    def add_pending(self, pilot_ids: Iterable[str], queue: str, now: float) -> None:
        for pilot_id in pilot_ids:
            self._entries[pilot_id] = JournalEntry(pilot_id=pilot_id, queue=queue, submitted=now)

    def set_reference(self, pilot_id: str, reference: str) -> None:
        entry = self._entries.get(pilot_id)
        if entry is not None:
            entry.reference = reference

    def mark_final(self, pilot_id: str, now: float) -> None:
        entry = self._entries.get(pilot_id)
        if entry is not None and entry.final_at is None:
            entry.final_at = now

    def remove(self, pilot_ids: Iterable[str]) -> None:
        for pilot_id in pilot_ids:
            self._entries.pop(pilot_id, None)
