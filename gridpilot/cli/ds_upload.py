"""Upload local files to one SE as a dataset's files, verifying every copy before it is
registered (used by gb2_ds_put).

Pure of any CLI concerns: the caller plans which local file becomes which LFN (`plan_files`),
says what the catalog already holds for those LFNs and how to register a copy (central's
RegisterReplicas), and gets one outcome per file.

Nothing is half-written: a copy whose upload, verification or registration fails is deleted
from the SE (best effort) and never registered, and an LFN the catalog already holds with other
contents is never uploaded over.
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from gridpilot.checksum import adler32_of_file
from gridpilot.logs import get_logger
from wrapper.se import SEFileNotFoundError, StorageError, StoragePlugin, open_storage
from wrapper.se.base import is_temporary

log = get_logger(__name__)

DEFAULT_WORKERS = 4


class PutOutcome(enum.StrEnum):
    UPLOADED = "uploaded"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class FileToPut:
    local: Path
    lfn: str


@dataclass(frozen=True)
class CatalogEntry:
    """What the catalog holds for an LFN: its size, adler32 and every SE with a copy."""

    size: int
    adler32: str
    ses: frozenset[str]


@dataclass
class PutResult:
    lfn: str
    local: Path
    outcome: PutOutcome
    # Of the local file (-1 / "" when it could not be read).
    size: int = -1
    adler32: str = ""
    errors: list[str] = field(default_factory=list)


class RegistrationError(Exception):
    """Central refused to register a verified copy; the message says why."""


# register(lfn, size, adler32): records the copy on the SE; RegistrationError when refused.
Register = Callable[[str, int, str], None]
Opener = Callable[[str], StoragePlugin]


def _local_files(directory: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """A directory's files (recursively, symlinked directories not followed) with their path
    parts below it; SE plugins' own temporaries are left out."""
    found: list[tuple[Path, tuple[str, ...]]] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if is_temporary(name):
                continue
            if path.is_file():
                found.append((path, path.relative_to(directory).parts))
    return found


def plan_files(paths: Sequence[Path], lpn: str) -> list[FileToPut]:
    """Which LFN each local file becomes, sorted by LFN: a file is `<LPN>/<its name>`, a
    directory's files are `<LPN>/<their path below it>`. ValueError for a path that does not
    exist, two files that would get one LFN, or nothing to upload at all."""
    base = lpn.rstrip("/")
    planned: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            found = _local_files(path)
        elif path.is_file():
            found = [(path, (path.name,))]
        elif path.exists() or path.is_symlink():
            raise ValueError(f"{path} is neither a regular file nor a directory")
        else:
            raise ValueError(f"{path} does not exist")
        for local, parts in found:
            if any(not part.isprintable() for part in parts):
                raise ValueError(f"{local}: file names for LFNs must be printable")
            lfn = base + "/" + "/".join(parts)
            other = planned.get(lfn)
            if other is not None and other.resolve() != local.resolve():
                raise ValueError(f"{other} and {local} would both be uploaded as {lfn}")
            planned[lfn] = local
    if not planned:
        raise ValueError(f"no files to upload in {', '.join(str(p) for p in paths)}")
    return [FileToPut(planned[lfn], lfn) for lfn in sorted(planned)]


def _stored_problem(storage: StoragePlugin, lfn: str, size: int, adler32: str) -> str:
    """What is wrong with the copy just written ("" when it matches the local file)."""
    got_size = storage.stat(lfn)
    if got_size != size:
        return f"size {got_size} != local size {size}"
    got_sum = storage.checksum(lfn)
    if got_sum != adler32:
        return f"adler32 {got_sum} != local adler32 {adler32}"
    return ""


def _discard(storage: StoragePlugin, lfn: str, se: str, written: bool) -> list[str]:
    """Delete what an attempt left on the SE; an error worth reporting only when a complete
    copy was known to be there (after a failed upload there is usually nothing)."""
    try:
        storage.delete(lfn)
    except SEFileNotFoundError:
        return []
    except (StorageError, OSError) as exc:
        log.warning("ds_put.discard_failed", lfn=lfn, se=se, error=str(exc))
        if written:
            return [f"the unregistered copy left on {se} could not be deleted: {exc}"]
    return []


def put_one(
    item: FileToPut,
    storage: StoragePlugin,
    se: str,
    existing: CatalogEntry | None,
    register: Register,
) -> PutResult:
    """Skip a file the catalog holds on this SE with the same contents, refuse one it holds
    with other contents, else upload, verify, register (and undo on any failure)."""
    result = PutResult(item.lfn, item.local, PutOutcome.FAILED)
    try:
        result.size = item.local.stat().st_size
        result.adler32 = adler32_of_file(item.local)
    except OSError as exc:
        result.errors.append(f"cannot read {item.local}: {exc.strerror or exc}")
        return result
    if existing is not None:
        if existing.size != result.size or existing.adler32.lower() != result.adler32:
            result.errors.append(
                f"already registered with other contents (size {existing.size}, adler32 "
                f"{existing.adler32}; this file: size {result.size}, adler32 {result.adler32}); "
                f"remove it first (gb2_ds_rm --lfn {item.lfn})"
            )
            return result
        if se in existing.ses:
            result.outcome = PutOutcome.SKIPPED
            return result
    written = False
    try:
        storage.upload(item.local, item.lfn)
        written = True
        problem = _stored_problem(storage, item.lfn, result.size, result.adler32)
        if problem:
            raise StorageError(f"the copy on {se} does not verify: {problem}")
        register(item.lfn, result.size, result.adler32)
    except (StorageError, OSError) as exc:
        result.errors.append(str(exc))
        result.errors.extend(_discard(storage, item.lfn, se, written))
        return result
    except RegistrationError as exc:
        result.errors.append(f"not registered: {exc}")
        result.errors.extend(_discard(storage, item.lfn, se, written))
        return result
    result.outcome = PutOutcome.UPLOADED
    return result


class _StoragePerThread:
    """One plugin per worker thread (a plugin may hold a connection that is not thread-safe);
    all closed at the end."""

    def __init__(self, opener: Opener, url: str) -> None:
        self._opener = opener
        self._url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[StoragePlugin] = []

    def get(self) -> StoragePlugin:
        storage: StoragePlugin | None = getattr(self._local, "storage", None)
        if storage is None:
            storage = self._opener(self._url)
            self._local.storage = storage
            with self._lock:
                self._opened.append(storage)
        return storage

    def close_all(self) -> None:
        for storage in self._opened:
            with contextlib.suppress(StorageError, OSError):
                storage.close()


def put_all(
    items: Sequence[FileToPut],
    se: str,
    se_url: str,
    catalog: Mapping[str, CatalogEntry],
    register: Register,
    *,
    workers: int = DEFAULT_WORKERS,
    on_done: Callable[[PutResult], None] | None = None,
    opener: Opener = open_storage,
) -> list[PutResult]:
    """Put every file in a small thread pool (transfers wait on I/O, not the GIL); results
    in the order of `items`."""
    storages = _StoragePerThread(opener, se_url)

    def one(item: FileToPut) -> PutResult:
        try:
            storage = storages.get()
        except StorageError as exc:
            return PutResult(item.lfn, item.local, PutOutcome.FAILED, errors=[str(exc)])
        return put_one(item, storage, se, catalog.get(item.lfn), register)

    results: list[PutResult] = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ds_put")
    try:
        futures = {pool.submit(one, item): item for item in items}
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if on_done is not None:
                on_done(result)
    except BaseException:
        # Ctrl-C: start no new file; the ones in flight finish (or undo themselves).
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        storages.close_all()
    order = {item.lfn: i for i, item in enumerate(items)}
    results.sort(key=lambda r: order[r.lfn])
    return results
