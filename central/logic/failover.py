"""The data request executor (the failover queue): replications of outputs parked on failover
SEs, removals, and checks of suspect copies.

Requests on one LFN run one at a time in the order they were made (the store hands out only
the oldest waiting request of each LFN), so a removal never races a replication of the same
file (the Belle II DDM lesson); among LFNs the highest priority goes first. Every operation can
fail half-way and be retried with exponential back-off; each is safe to repeat:

- replicate: copy, verify size and adler32 on the destination, register the destination
  replica, and only then delete the failover copy and its replica;
- remove: delete the copy on one SE (or every copy), drop the replicas, then the catalog entry;
- check: compare a suspect copy with the catalog; a good copy is cleared, a bad one stays
  suspect (read last), a missing one leaves the catalog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from central.config import CentralConfig
from central.logic.reports import complete_if_requests_done
from central.logic.se_operations import (
    ReplicationError,
    copy_problem,
    delete_copy,
    replicate,
)
from central.logic.storage_elements import StorageElements
from central.store.interface import Store
from central.store.records import (
    CHECK,
    REMOVE,
    REPLICATE,
    FailoverRequestRecord,
    FileRecord,
    StorageElementRecord,
)
from gridpilot.logs import get_logger
from wrapper.se import SEFileNotFoundError, StorageError

log = get_logger(__name__)

MAX_BACKOFF_SECONDS = 3600.0


@dataclass(slots=True)
class FailoverReport:
    done: int = 0
    retried: int = 0
    failed: int = 0


def _se(ses: StorageElements, name: str, role: str) -> StorageElementRecord:
    se = ses.get(name)
    if se is None:
        raise ReplicationError(f"unknown {role} SE {name!r}")
    return se


async def _catalog_entry(store: Store, lfn: str) -> FileRecord | None:
    return (await store.get_files([lfn])).get(lfn)


async def _replicate(store: Store, ses: StorageElements, request: FailoverRequestRecord) -> str:
    source = _se(ses, request.source_se, "source")
    target = _se(ses, request.target_se, "target")
    if refusal := ses.write_refusal(target.name):
        raise ReplicationError(f"target SE {target.name} takes no writes now: {refusal}")
    file = await _catalog_entry(store, request.lfn)
    if file is None:
        raise ReplicationError(f"{request.lfn} is not in the catalog")
    await asyncio.to_thread(replicate, source.url, target.url, file.lfn, file.size, file.adler32)
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
    # Only now that the destination copy is verified and registered.
    await asyncio.to_thread(delete_copy, source.url, file.lfn)
    await store.remove_replica(file.lfn, source.name)
    return ""


async def _remove(store: Store, ses: StorageElements, request: FailoverRequestRecord) -> str:
    file = await _catalog_entry(store, request.lfn)
    if file is None:
        return "not in the catalog (nothing to remove)"
    names = [request.target_se] if request.target_se else list(file.ses)
    for name in names:
        se = _se(ses, name, "replica")
        await asyncio.to_thread(delete_copy, se.url, file.lfn)
        await store.remove_replica(file.lfn, name)
        log.info("file.replica_removed", lfn=file.lfn, se=name, request_id=request.request_id)
    if not request.target_se:
        await store.remove_file(file.lfn)
        log.info("file.removed", lfn=file.lfn, request_id=request.request_id)
    return ""


async def _check(store: Store, ses: StorageElements, request: FailoverRequestRecord) -> str:
    file = await _catalog_entry(store, request.lfn)
    if file is None or request.target_se not in file.ses:
        return "no such replica any more"
    se = _se(ses, request.target_se, "checked")
    try:
        problem = await asyncio.to_thread(copy_problem, se.url, file.lfn, file.size, file.adler32)
    except SEFileNotFoundError:
        await store.remove_replica(file.lfn, se.name)
        log.warning("replica.missing", lfn=file.lfn, se=se.name)
        return f"the copy on {se.name} is missing: replica removed from the catalog"
    if problem:
        await store.set_replica_suspect(file.lfn, se.name, f"confirmed: {problem}")
        log.error("replica.bad", lfn=file.lfn, se=se.name, problem=problem)
        return f"the copy on {se.name} is bad: {problem}"
    await store.set_replica_suspect(file.lfn, se.name, "")
    log.info("replica.cleared", lfn=file.lfn, se=se.name)
    return ""


_OPERATIONS = {REPLICATE: _replicate, REMOVE: _remove, CHECK: _check}


def backoff(period: float, attempts: int) -> float:
    return float(min(period * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


async def execute_failover_requests(
    store: Store,
    ses: StorageElements,
    config: CentralConfig,
    clock: Callable[[], float],
    limit: int = 50,
) -> FailoverReport:
    """Run the data requests due now (at most `limit`)."""
    report = FailoverReport()
    c = config.central
    for request in await store.due_failover_requests(clock(), limit):
        attempts = request.attempts + 1
        operation = _OPERATIONS.get(request.operation)
        try:
            if operation is None:
                raise ReplicationError(f"unknown operation {request.operation!r}")
            outcome = await operation(store, ses, request)
        except (ReplicationError, StorageError, OSError, ValueError) as exc:
            give_up = attempts >= c.failover_max_attempts or operation is None
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
                "request.attempt_failed",
                request_id=request.request_id,
                operation=request.operation,
                job_id=request.job_id,
                lfn=request.lfn,
                attempts=attempts,
                final=give_up,
                error=str(exc),
            )
            if give_up:
                report.failed += 1
            else:
                report.retried += 1
                continue
        else:
            now = clock()
            await store.update_failover_request(
                request.request_id,
                status="Done",
                attempts=attempts,
                last_error=outcome,
                next_try=now,
                now=now,
            )
            report.done += 1
            log.info(
                "request.done",
                request_id=request.request_id,
                operation=request.operation,
                job_id=request.job_id,
                lfn=request.lfn,
                target=request.target_se,
                note=outcome,
            )
        if request.job_id:
            await complete_if_requests_done(store, request.job_id, clock())
    return report
