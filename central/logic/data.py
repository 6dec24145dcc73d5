"""Data management: SE registry, replica ordering for a site, catalog and failover requests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from central.config import CentralConfig
from central.logic.errors import InvalidArgumentError, NotFoundError
from central.store.interface import Store
from central.store.records import (
    FailoverRequestRecord,
    FileRecord,
    NewFailoverRequest,
    StorageElementRecord,
)
from gridpilot.logs import get_logger

log = get_logger(__name__)

REQUEST_STATUSES = ("Waiting", "Done", "Failed")


def se_url(se: StorageElementRecord, lfn: str) -> str:
    """The same join as wrapper.se's StoragePlugin.url_for."""
    return se.url.rstrip("/") + "/" + lfn.lstrip("/")


class StorageElements:
    """The SEs as the store has them (config plus admins' read/write switches), in memory.

    Matching reads the failover list on every job, so the table is cached here and refreshed
    on every change made through central.
    """

    def __init__(self, records: Iterable[StorageElementRecord] = ()) -> None:
        self._by_name: dict[str, StorageElementRecord] = {se.name: se for se in records}

    async def sync_from_config(self, store: Store, config: CentralConfig) -> None:
        await store.upsert_storage_elements(
            [
                StorageElementRecord(
                    name=se.name,
                    site=se.site,
                    url=se.url,
                    read_allowed=se.read,
                    write_allowed=se.write,
                )
                for se in config.storage_elements
            ]
        )
        await self.reload(store)

    async def reload(self, store: Store) -> None:
        self._by_name = {se.name: se for se in await store.list_storage_elements()}

    def get(self, name: str) -> StorageElementRecord | None:
        return self._by_name.get(name)

    def all(self) -> list[StorageElementRecord]:
        return sorted(self._by_name.values(), key=lambda se: se.name)

    def require(self, name: str) -> StorageElementRecord:
        se = self._by_name.get(name)
        if se is None:
            raise InvalidArgumentError(f"unknown storage element {name!r}")
        return se

    def writable(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if (se := self._by_name.get(n)) is not None and se.write_allowed]

    async def set_status(self, store: Store, name: str, read: bool, write: bool) -> None:
        if not await store.set_storage_element_status(name, read, write):
            raise NotFoundError(f"storage element {name!r} does not exist")
        await self.reload(store)
        log.info("se.status", se=name, read=read, write=write)


@dataclass(frozen=True, slots=True)
class RankedReplica:
    se: str
    url: str
    rank_reason: str


@dataclass(frozen=True, slots=True)
class FileReplicas:
    lfn: str
    size: int
    adler32: str
    replicas: list[RankedReplica]


def _format_cost(cost: float) -> str:
    return f"{cost:g}"


def rank_replicas(
    file: FileRecord, site: str, config: CentralConfig, ses: StorageElements
) -> list[RankedReplica]:
    """Local SEs first, then by configured distance, then the rest; unreadable SEs left out."""
    site_cfg = config.site(site) if site else None
    local = set(site_cfg.local_ses) if site_cfg else set()
    distances = config.distances.get(site, {}) if site else {}
    ranked: list[tuple[tuple[int, float, int], RankedReplica]] = []
    for position, name in enumerate(file.ses):
        se = ses.get(name)
        if se is None or not se.read_allowed:
            continue
        if not site:
            key, reason = (0, 0.0, position), "catalog order"
        elif name in local or se.site == site:
            key, reason = (0, 0.0, position), "local SE"
        elif name in distances:
            cost = distances[name]
            key, reason = (1, cost, position), f"distance {_format_cost(cost)}"
        else:
            key, reason = (2, 0.0, position), "no distance"
        ranked.append((key, RankedReplica(name, se_url(se, file.lfn), reason)))
    ranked.sort(key=lambda item: item[0])
    return [replica for _, replica in ranked]


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
        FileReplicas(f.lfn, f.size, f.adler32, rank_replicas(f, site, config, ses))
        for lfn in dict.fromkeys(lfns)
        if (f := files.get(lfn)) is not None
    ]


async def list_dataset(
    store: Store, config: CentralConfig, ses: StorageElements, lpn: str
) -> list[FileReplicas]:
    if not lpn.startswith("/"):
        raise InvalidArgumentError(f"dataset path {lpn!r} must start with '/'")
    files = await store.list_files(lpn.rstrip("/") or "/")
    return [
        FileReplicas(f.lfn, f.size, f.adler32, rank_replicas(f, "", config, ses)) for f in files
    ]


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
    store: Store, job_id: int, status: str
) -> list[FailoverRequestRecord]:
    if status and status not in REQUEST_STATUSES:
        raise InvalidArgumentError(
            f"request status {status!r} is not one of {', '.join(REQUEST_STATUSES)}"
        )
    return await store.list_failover_requests(job_id, status)
