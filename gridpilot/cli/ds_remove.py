"""Remove files from the grid through central, and follow the removals (used by gb2_ds_rm).

Central does not delete while the user waits: RemoveFiles queues one data request per file
(delete every copy, then the catalog entry), run by its executor in order with any other request
on the same file. The caller gets the request ids and follows them with ListFailoverRequests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gridpilot.client import CentralClient
from gridpilot.v1 import data_pb2

# Request statuses as central names them, and ours for a removal central would not queue.
WAITING = "Waiting"
DONE = "Done"
FAILED = "Failed"
REFUSED = "Refused"
FINAL = frozenset({DONE, FAILED, REFUSED})

# Ids per RemoveFiles / ListFailoverRequests call: small requests however big the dataset.
_BATCH = 500
_FIRST_POLL = 0.2
_MAX_POLL = 2.0


@dataclass
class Removal:
    lfn: str
    request_id: int = 0
    status: str = WAITING
    # Why it was refused or failed; for a waiting request, its last failed attempt's error.
    error: str = ""
    attempts: int = 0

    @property
    def final(self) -> bool:
        return self.status in FINAL


def queue_removals(client: CentralClient, lfns: Sequence[str]) -> list[Removal]:
    """Ask central to remove each file; one Removal per LFN, refusals included."""
    removals: list[Removal] = []
    for start in range(0, len(lfns), _BATCH):
        response: data_pb2.RemoveFilesResponse = client.call(
            client.data.RemoveFiles, data_pb2.RemoveFilesRequest(lfns=lfns[start : start + _BATCH])
        )
        for r in response.results:
            if r.request_id:
                removals.append(Removal(r.lfn, r.request_id))
            else:
                removals.append(Removal(r.lfn, status=REFUSED, error=r.error or "refused"))
    return removals


def _poll(client: CentralClient, pending: dict[int, Removal]) -> None:
    ids = sorted(pending)
    for start in range(0, len(ids), _BATCH):
        response: data_pb2.ListFailoverRequestsResponse = client.call(
            client.data.ListFailoverRequests,
            data_pb2.ListFailoverRequestsRequest(request_ids=ids[start : start + _BATCH]),
        )
        for request in response.requests:
            removal = pending.get(request.request_id)
            if removal is not None:
                removal.status = request.status
                removal.error = request.last_error
                removal.attempts = request.attempts


def follow_removals(
    client: CentralClient,
    removals: Sequence[Removal],
    timeout: float,
    on_progress: Callable[[int], None] | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll until every queued removal is Done or Failed, or `timeout` seconds have passed
    (what is still waiting then stays WAITING); updates `removals` in place and calls
    `on_progress(number ended)` after each poll."""
    pending = {r.request_id: r for r in removals if not r.final}
    deadline = clock() + timeout
    delay = _FIRST_POLL
    ended = 0
    while pending:
        _poll(client, pending)
        for request_id in [i for i, r in pending.items() if r.final]:
            del pending[request_id]
            ended += 1
        if on_progress is not None:
            on_progress(ended)
        left = deadline - clock()
        if not pending or left <= 0:
            return
        # Central runs a removal within moments; back off for the slow ones (SE retries).
        sleep(min(delay, left))
        delay = min(delay * 1.5, _MAX_POLL)
