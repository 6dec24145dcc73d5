"""SE health probes, like Belle II's StorageElementStatusAgent.

Every `storage.probe_period` seconds central writes a small file of random bytes to each SE
(under `storage.probe_dir`), checks its size and the SE's checksum, reads it back, deletes
it, and asks the SE for its space. An SE failing `storage.probe_failures` probes in a row is
unavailable for reading and writing until a probe passes again; an SE that reports more than
`storage.full_threshold` of its space used takes no new writes (central/logic/
storage_elements.py). SEs whose writes an administrator disabled are not probed (a probe
writes), and keep their last health.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from central.config import StorageSection
from central.logic.storage_elements import StorageElements
from central.store.interface import Store
from central.store.records import SEHealthRecord, StorageElementRecord
from gridpilot.checksum import adler32_of_bytes
from gridpilot.logs import get_logger
from wrapper.se import SENotSupportedError, SpaceUsage, StorageError, StoragePlugin, open_storage

log = get_logger(__name__)

Opener = Callable[[str], StoragePlugin]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    seconds: float
    error: str = ""
    space: SpaceUsage | None = None


def probe(url: str, settings: StorageSection, opener: Opener = open_storage) -> ProbeResult:
    """Blocking: one write/check/read/delete round trip on the SE at `url`, then its space."""
    started = time.monotonic()
    data = os.urandom(settings.probe_bytes)
    lfn = f"{settings.probe_dir.rstrip('/')}/{int(time.time())}-{uuid.uuid4().hex[:12]}.probe"
    storage: StoragePlugin | None = None
    step = "open"
    try:
        storage = opener(url)
        with tempfile.TemporaryDirectory(prefix="gridpilot-probe-") as tmp:
            local, back = Path(tmp) / "probe", Path(tmp) / "back"
            local.write_bytes(data)
            step = "write"
            storage.upload(local, lfn)
            step = "check"
            size, checksum = storage.stat(lfn), storage.checksum(lfn)
            if (size, checksum) != (len(data), adler32_of_bytes(data)):
                raise StorageError(
                    f"probe file reads back as size {size} adler32 {checksum}, "
                    f"expected {len(data)} {adler32_of_bytes(data)}"
                )
            step = "read"
            storage.download(lfn, back)
            if back.read_bytes() != data:
                raise StorageError("probe file downloads with other contents")
        step = "delete"
        storage.delete(lfn)
        step = "space"
        try:
            space: SpaceUsage | None = storage.space()
        except SENotSupportedError:
            space = None
    except (StorageError, OSError) as exc:
        if storage is not None and step in ("check", "read"):
            _delete_quietly(storage, lfn)
        return ProbeResult(False, time.monotonic() - started, f"{step}: {exc}")
    finally:
        if storage is not None:
            storage.close()
    return ProbeResult(True, time.monotonic() - started, space=space)


def _delete_quietly(storage: StoragePlugin, lfn: str) -> None:
    try:
        storage.delete(lfn)
    except StorageError as exc:
        log.warning("se.probe_not_removed", lfn=lfn, error=str(exc))


def after_probe(
    previous: SEHealthRecord | None, se: str, result: ProbeResult, failures: int, now: float
) -> SEHealthRecord:
    """The SE's health once `result` is known: `failures` failed probes in a row make it
    unavailable, one that passes makes it available again."""
    before = previous or SEHealthRecord(se=se)
    if result.ok:
        space = result.space
        return SEHealthRecord(
            se=se,
            available=True,
            consecutive_failures=0,
            last_probe=now,
            last_ok=now,
            last_error="",
            total_bytes=space.total_bytes if space is not None else -1,
            free_bytes=space.free_bytes if space is not None else -1,
            probe_seconds=result.seconds,
        )
    in_a_row = before.consecutive_failures + 1
    return SEHealthRecord(
        se=se,
        available=in_a_row < failures,
        consecutive_failures=in_a_row,
        last_probe=now,
        last_ok=before.last_ok,
        last_error=result.error,
        total_bytes=before.total_bytes,
        free_bytes=before.free_bytes,
        probe_seconds=result.seconds,
    )


async def _probe_one(
    se: StorageElementRecord, settings: StorageSection, opener: Opener
) -> ProbeResult:
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(probe, se.url, settings, opener), settings.probe_timeout
        )
    except TimeoutError:
        return ProbeResult(
            False, settings.probe_timeout, f"no answer in {settings.probe_timeout:g} s"
        )


async def probe_storage_elements(
    store: Store,
    ses: StorageElements,
    clock: Callable[[], float],
    opener: Opener = open_storage,
) -> list[SEHealthRecord]:
    """Probe every SE whose writes are allowed, at once; record and return their health."""
    settings = ses.settings
    targets = [se for se in ses.all() if se.write_allowed]
    results = await asyncio.gather(*(_probe_one(se, settings, opener) for se in targets))
    now = clock()
    recorded: list[SEHealthRecord] = []
    for se, result in zip(targets, results, strict=True):
        previous = ses.health(se.name)
        health = after_probe(previous, se.name, result, settings.probe_failures, now)
        await store.put_se_health(health)
        ses.set_health(health)
        recorded.append(health)
        _log_change(previous, health)
    return recorded


def _log_change(previous: SEHealthRecord | None, health: SEHealthRecord) -> None:
    was_available = previous is None or previous.available
    if was_available and not health.available:
        log.error(
            "se.unavailable",
            se=health.se,
            failures=health.consecutive_failures,
            error=health.last_error,
        )
    elif not was_available and health.available:
        log.info("se.recovered", se=health.se)
    elif health.last_error:
        log.warning(
            "se.probe_failed",
            se=health.se,
            failures=health.consecutive_failures,
            error=health.last_error,
        )
    else:
        log.debug("se.probe_ok", se=health.se, seconds=round(health.probe_seconds, 3))
