"""The failover request executor: replicate an output from the failover SE to its destination.

Order matters: copy, verify size and adler32 on the destination, register the destination
replica, and only then delete the failover copy and its replica. Any step can fail and be
retried: a verified destination copy is not copied again.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from central.config import CentralConfig
from central.logic.data import StorageElements
from central.logic.reports import complete_if_requests_done
from central.store.interface import Store
from central.store.records import FailoverRequestRecord, FileRecord
from gridpilot.logs import get_logger
from wrapper.se import SEFileNotFoundError, StorageError, open_storage

log = get_logger(__name__)

MAX_BACKOFF_SECONDS = 3600.0


class ReplicationError(Exception):
    """One attempt of a request failed; it will be retried (or fail for good)."""


@dataclass(slots=True)
class FailoverReport:
    done: int = 0
    retried: int = 0
    failed: int = 0


def _has_verified_copy(se_url: str, lfn: str, size: int, adler32: str) -> bool:
    storage = open_storage(se_url)
    try:
        return storage.stat(lfn) == size and storage.checksum(lfn) == adler32
    except SEFileNotFoundError:
        return False


def replicate(source_url: str, target_url: str, lfn: str, size: int, adler32: str) -> None:
    """Blocking: copy one file between SEs through a temporary file and verify the target."""
    if _has_verified_copy(target_url, lfn, size, adler32):
        return
    source, target = open_storage(source_url), open_storage(target_url)
    with tempfile.TemporaryDirectory(prefix="gridpilot-failover-") as tmp:
        local = Path(tmp) / "file"
        source.download(lfn, local)
        target.upload(local, lfn)
    got_size, got_sum = target.stat(lfn), target.checksum(lfn)
    if (got_size, got_sum) != (size, adler32):
        try:
            target.delete(lfn)
        except StorageError:
            log.warning("failover.bad_copy_left", lfn=lfn, se_url=target_url)
        raise ReplicationError(
            f"{lfn}: copy on {target_url} does not verify "
            f"(size {got_size}, adler32 {got_sum}; expected {size}, {adler32})"
        )


def delete_copy(se_url: str, lfn: str) -> None:
    # Already gone means an earlier attempt got this far.
    with contextlib.suppress(SEFileNotFoundError):
        open_storage(se_url).delete(lfn)


async def _execute(store: Store, ses: StorageElements, request: FailoverRequestRecord) -> None:
    source, target = ses.get(request.source_se), ses.get(request.target_se)
    if source is None or target is None:
        raise ReplicationError(
            f"unknown SE in request ({request.source_se} -> {request.target_se})"
        )
    if not target.write_allowed:
        raise ReplicationError(f"target SE {target.name} is not writable now")
    known = await store.get_files([request.lfn])
    file = known.get(request.lfn)
    if file is None:
        raise ReplicationError(f"{request.lfn} is not in the catalog")
    await asyncio.to_thread(replicate, source.url, target.url, request.lfn, file.size, file.adler32)
    await store.add_files(
        [
            FileRecord(
                lfn=file.lfn,
                size=file.size,
                adler32=file.adler32,
                ses=(target.name,),
                job_id=file.job_id,
            )
        ]
    )
    await asyncio.to_thread(delete_copy, source.url, request.lfn)
    await store.remove_replica(request.lfn, source.name)


def backoff(period: float, attempts: int) -> float:
    return float(min(period * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


async def execute_failover_requests(
    store: Store,
    ses: StorageElements,
    config: CentralConfig,
    clock: Callable[[], float],
    limit: int = 50,
) -> FailoverReport:
    report = FailoverReport()
    c = config.central
    for request in await store.due_failover_requests(clock(), limit):
        attempts = request.attempts + 1
        try:
            await _execute(store, ses, request)
        except (ReplicationError, StorageError, OSError, ValueError) as exc:
            give_up = attempts >= c.failover_max_attempts
            now = clock()
            await store.update_failover_request(
                request.request_id,
                status="Failed" if give_up else "Waiting",
                attempts=attempts,
                last_error=str(exc),
                next_try=now + backoff(c.failover_period, attempts),
                now=now,
            )
            log.warning(
                "failover.attempt_failed",
                request_id=request.request_id,
                job_id=request.job_id,
                attempts=attempts,
                final=give_up,
                error=str(exc),
            )
            if not give_up:
                report.retried += 1
                continue
            report.failed += 1
        else:
            now = clock()
            await store.update_failover_request(
                request.request_id,
                status="Done",
                attempts=attempts,
                last_error="",
                next_try=now,
                now=now,
            )
            report.done += 1
            log.info(
                "failover.done",
                request_id=request.request_id,
                job_id=request.job_id,
                lfn=request.lfn,
                target=request.target_se,
            )
        if request.job_id:
            await complete_if_requests_done(store, request.job_id, clock())
    return report
