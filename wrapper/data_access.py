"""What the wrapper saw of the storage elements, for central: how long each transfer took
(central learns each site's SE costs from it) and which copies did not match the catalog
(central marks them suspect and checks them)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gridpilot.v1 import data_pb2


@dataclass
class DataAccessLog:
    transfers: list[data_pb2.TransferSample] = field(default_factory=list)
    suspects: list[data_pb2.SuspectReplica] = field(default_factory=list)

    @contextmanager
    def transfer(self, se: str, direction: str, size: int) -> Iterator[None]:
        """Time the enclosed transfer of `size` bytes; a raised error records a failure."""
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            self.transfers.append(
                data_pb2.TransferSample(
                    se=se,
                    direction=direction,
                    bytes=size,
                    seconds=time.monotonic() - started,
                    ok=False,
                    error=str(exc)[:500],
                )
            )
            raise
        self.transfers.append(
            data_pb2.TransferSample(
                se=se, direction=direction, bytes=size, seconds=time.monotonic() - started, ok=True
            )
        )

    def suspect(self, lfn: str, se: str, reason: str) -> None:
        self.suspects.append(data_pb2.SuspectReplica(lfn=lfn, se=se, reason=reason[:500]))

    def request(self, job_id: int) -> data_pb2.ReportDataAccessRequest | None:
        if not self.transfers and not self.suspects:
            return None
        return data_pb2.ReportDataAccessRequest(
            job_id=job_id, transfers=self.transfers, suspects=self.suspects
        )
