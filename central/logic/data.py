"""Data management: the replica catalog, datasets and data requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from central.config import CentralConfig
from central.logic.access import check_lfn_owner
from central.logic.errors import InvalidArgumentError, PermissionDeniedError
from central.logic.identity import Caller
from central.logic.replica_ranking import FileReplicas, rank_file
from central.logic.storage_elements import StorageElements
from central.store.interface import Store
from central.store.records import (
    CHECK,
    DEFAULT_PRIORITY,
    REMOVE,
    FailoverRequestRecord,
    FileRecord,
    NewFailoverRequest,
)
from gridpilot.logs import get_logger

log = get_logger(__name__)

REQUEST_STATUSES = ("Waiting", "Done", "Failed")


async def get_replicas(
    store: Store,
    config: CentralConfig,
    ses: StorageElements,
    lfns: Sequence[str],
    site: str,
) -> list[FileReplicas]:
    """Known LFNs in the order asked; an LFN missing from the catalog is left out."""
    files = await store.get_files(list(lfns))
    return [
        rank_file(f, site, config, ses)
        for lfn in dict.fromkeys(lfns)
        if (f := files.get(lfn)) is not None
    ]


async def list_dataset(
    store: Store, config: CentralConfig, ses: StorageElements, lpn: str
) -> list[FileReplicas]:
    if not lpn.startswith("/"):
        raise InvalidArgumentError(f"dataset path {lpn!r} must start with '/'")
    files = await store.list_files(lpn.rstrip("/") or "/")
    return [rank_file(f, "", config, ses) for f in files]


def _check_lfn(lfn: str) -> None:
    if not lfn.startswith("/") or "//" in lfn or "/../" in lfn + "/" or lfn.endswith("/"):
        raise InvalidArgumentError(f"malformed LFN {lfn!r}")


async def register_replicas(
    store: Store, ses: StorageElements, files: Sequence[FileRecord]
) -> None:
    for f in files:
        _check_lfn(f.lfn)
        for se in f.ses:
            ses.require(se)
        if f.size < 0:
            raise InvalidArgumentError(f"{f.lfn}: negative size {f.size}")
    try:
        await store.add_files(files)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from exc


async def add_failover_request(
    store: Store, ses: StorageElements, request: NewFailoverRequest, now: float
) -> int:
    _check_lfn(request.lfn)
    ses.require(request.source_se)
    ses.require(request.target_se)
    if request.source_se == request.target_se:
        raise InvalidArgumentError("failover request source and target SE are the same")
    known = await store.get_files([request.lfn])
    if request.lfn not in known:
        raise InvalidArgumentError(f"unknown LFN {request.lfn!r}")
    (request_id,) = await store.add_failover_requests([request], now)
    log.info(
        "failover.request_added", request_id=request_id, job_id=request.job_id, lfn=request.lfn
    )
    return request_id


async def list_failover_requests(
    store: Store, job_id: int, status: str, request_ids: Sequence[int] = ()
) -> list[FailoverRequestRecord]:
    if status and status not in REQUEST_STATUSES:
        raise InvalidArgumentError(
            f"request status {status!r} is not one of {', '.join(REQUEST_STATUSES)}"
        )
    return await store.list_failover_requests(job_id, status, request_ids)


@dataclass(frozen=True)
class Removal:
    lfn: str
    request_id: int = 0
    error: str = ""


async def remove_files(
    store: Store, caller: Caller, lfns: Sequence[str], now: float
) -> list[Removal]:
    """Queue the removal of each file (every copy, then its catalog entry) behind whatever
    other request its LFN has waiting; per-LFN results, refusals included."""
    results: list[Removal] = []
    known = await store.get_files(list(lfns))
    queued: list[NewFailoverRequest] = []
    for lfn in lfns:
        try:
            _check_lfn(lfn)
            check_lfn_owner(caller, lfn, "remove files")
        except (InvalidArgumentError, PermissionDeniedError) as exc:
            results.append(Removal(lfn, error=str(exc)))
            continue
        if lfn not in known:
            results.append(Removal(lfn, error="not in the catalog"))
            continue
        queued.append(
            NewFailoverRequest(
                job_id=0,
                lfn=lfn,
                source_se="",
                target_se="",
                operation=REMOVE,
                priority=DEFAULT_PRIORITY[REMOVE],
                owner=caller.subject,
            )
        )
        results.append(Removal(lfn))
    ids = iter(await store.add_failover_requests(queued, now) if queued else [])
    final = [r if r.error else Removal(r.lfn, request_id=next(ids)) for r in results]
    for r in final:
        if r.request_id:
            log.info(
                "file.removal_queued", lfn=r.lfn, request_id=r.request_id, owner=caller.subject
            )
    return final


@dataclass(frozen=True)
class SuspectReport:
    lfn: str
    se: str
    reason: str


async def report_suspects(
    store: Store, suspects: Sequence[SuspectReport], reporter: str, now: float
) -> int:
    """Mark each reported copy suspect (it is read last from now on) and queue a check of it
    by central, once per copy; the number of checks queued."""
    checks: list[NewFailoverRequest] = []
    for s in suspects:
        pending = await store.list_failover_requests(status="Waiting", lfn=s.lfn)
        if any(r.operation == CHECK and r.target_se == s.se for r in pending):
            continue
        reason = f"{s.reason} (reported by {reporter})"
        if not await store.set_replica_suspect(s.lfn, s.se, reason[:500]):
            continue
        log.warning("replica.suspect", lfn=s.lfn, se=s.se, reason=s.reason, reporter=reporter)
        checks.append(
            NewFailoverRequest(
                job_id=0,
                lfn=s.lfn,
                source_se="",
                target_se=s.se,
                operation=CHECK,
                priority=DEFAULT_PRIORITY[CHECK],
            )
        )
    if checks:
        await store.add_failover_requests(checks, now)
    return len(checks)
