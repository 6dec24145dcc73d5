"""What a backend keeps per pilot reference between cycles and across director restarts (its
pilot id, when it was submitted, whether it was cancelled, how it ended): one small JSON file
per reference, through `RemoteFiles` (on the director's disk, or on an SSH host's)."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from gridpilot.logs import get_logger
from sitedirectors.remote import RemoteFiles

log = get_logger(__name__)

R = TypeVar("R", bound=msgspec.Struct)


class ReferenceRecords(Generic[R]):
    def __init__(
        self, files: RemoteFiles, directory: str, kind: type[R], max_bytes: int = 4096
    ) -> None:
        self.files = files
        self.directory = directory
        self.kind = kind
        # A record is a few hundred bytes; a larger file is not one of ours.
        self.max_bytes = max_bytes

    def path(self, reference: str) -> str:
        return f"{self.directory}/{reference}"

    def read(self, reference: str) -> R | None:
        """The record, or None when there is none or it cannot be decoded (logged)."""
        text = self.files.tail(self.path(reference), self.max_bytes)
        if not text:
            return None
        try:
            return msgspec.json.decode(text, type=self.kind)
        except msgspec.DecodeError as exc:
            log.warning("pilot.record_unreadable", reference=reference, error=str(exc))
            return None

    def write(self, reference: str, record: R) -> None:
        self.files.make_dirs(self.directory, 0o700)
        self.files.write_file(self.path(reference), msgspec.json.encode(record))

    def remove(self, reference: str) -> None:
        self.files.remove_tree(self.path(reference))
