"""Download a dataset's files, best replica first, verifying every copy (used by gb2_ds_get).

Pure of any CLI concerns: the caller supplies the files (with their catalog size and adler32),
the replicas ordered for its site and the SE base URLs, and gets one outcome per file, with
the copies that downloaded but did not match the catalog (for the caller to report as suspect).
A download is resumable: files already present and verified are skipped, and the temporaries an
interrupted run left behind are removed by `remove_stale_partials`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gridpilot.checksum import adler32_of_file
from gridpilot.logs import get_logger
from wrapper.se import StorageError, StoragePlugin, open_storage
from wrapper.se.base import TEMP_PREFIX, TEMP_SUFFIX

log = get_logger(__name__)

DEFAULT_WORKERS = 4
# The temporary names every SE plugin downloads to (wrapper/se/file.py, webdav.py, xrootd.py).


class Outcome(enum.StrEnum):
    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class FileToGet:
    lfn: str
    size: int
    adler32: str
    # (SE name, replica URL), best first.
    replicas: tuple[tuple[str, str], ...]
    local: Path


@dataclass(frozen=True)
class BadCopy:
    """A replica that downloaded but does not match the catalog."""

    se: str
    # As central words it: "adler32 1a2b3c4d != catalog adler32 5e6f7a8b".
    problem: str


@dataclass
class FileResult:
    lfn: str
    outcome: Outcome
    local: Path
    se: str = ""
    errors: list[str] = field(default_factory=list)
    bad_copies: list[BadCopy] = field(default_factory=list)


def dataset_dir(lpn: str, dest: Path) -> Path:
    """The directory a dataset lands in: DEST/<last part of the LPN>."""
    return dest / (PurePosixPath(lpn.rstrip("/") or "/").name or "dataset")


def local_path_for(lfn: str, lpn: str, dest: Path) -> Path:
    """Where an LFN of dataset `lpn` lands: DEST/<last part of lpn>/<path below lpn>.

    Refuses names that would escape DEST (a catalog is data, not trusted paths)."""
    base = PurePosixPath(lpn.rstrip("/") or "/")
    lfn_path = PurePosixPath(lfn)
    try:
        relative = lfn_path.relative_to(base)
    except ValueError:
        relative = PurePosixPath(lfn_path.name)
    parts = [base.name or "dataset", *relative.parts]
    if any(part in ("", ".", "..") or "/" in part for part in parts):
        raise ValueError(f"refusing unsafe LFN {lfn!r}")
    return dest.joinpath(*parts)


def remove_stale_partials(directory: Path) -> list[Path]:
    """Delete the temporaries (`.gridpilot-*.part`) that SE plugins write downloads to before
    renaming them, left behind when an earlier run was killed; the paths removed.

    Runs before any download starts: two gb2_ds_get into one directory at once are not
    supported (the second would remove the first one's files in flight)."""
    if not directory.is_dir():
        return []
    removed: list[Path] = []
    for path in sorted(directory.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def copy_problem(path: Path, size: int, adler32: str) -> str:
    """What is wrong with a local copy ("" when it matches the catalog); FileNotFoundError
    when there is none."""
    got_size = path.stat().st_size
    if got_size != size:
        return f"size {got_size} != catalog size {size}"
    got_sum = adler32_of_file(path)
    if got_sum != adler32.lower():
        return f"adler32 {got_sum} != catalog adler32 {adler32.lower()}"
    return ""


def _matches(path: Path, size: int, adler32: str) -> bool:
    try:
        return copy_problem(path, size, adler32) == ""
    except FileNotFoundError:
        return False


def _se_base_url(se: str, url: str, lfn: str, se_urls: Mapping[str, str]) -> str:
    """The SE's base URL: from the SE list, else cut the LFN off the replica URL."""
    known = se_urls.get(se)
    if known:
        return known
    suffix = "/" + lfn.lstrip("/")
    if url.endswith(suffix):
        return url[: -len(suffix)]
    raise StorageError(f"cannot tell the base URL of SE {se} from replica {url}")


def get_one(item: FileToGet, se_urls: Mapping[str, str]) -> FileResult:
    """Skip when present and intact; else try each replica until one verifies."""
    if _matches(item.local, item.size, item.adler32):
        return FileResult(item.lfn, Outcome.SKIPPED, item.local)
    result = FileResult(item.lfn, Outcome.FAILED, item.local)
    if not item.replicas:
        result.errors.append("no readable replica")
        return result
    item.local.parent.mkdir(parents=True, exist_ok=True)
    for se, url in item.replicas:
        storage: StoragePlugin | None = None
        try:
            storage = open_storage(_se_base_url(se, url, item.lfn, se_urls))
            storage.download(item.lfn, item.local)
        except (StorageError, OSError) as exc:
            result.errors.append(f"{se}: {exc}")
            log.debug("ds_get.replica_failed", lfn=item.lfn, se=se, error=str(exc))
            continue
        finally:
            if storage is not None:
                storage.close()
        try:
            problem = copy_problem(item.local, item.size, item.adler32)
        except FileNotFoundError:
            # Removed under us (another process): says nothing about the SE's copy.
            result.errors.append(f"{se}: the downloaded file vanished from {item.local}")
            continue
        if not problem:
            result.outcome, result.se = Outcome.DOWNLOADED, se
            return result
        # A corrupt copy must not be taken for a good one on the next run.
        item.local.unlink(missing_ok=True)
        result.errors.append(f"{se}: size or adler32 differs from the catalog ({problem})")
        result.bad_copies.append(BadCopy(se, problem))
    return result


def get_all(
    items: Sequence[FileToGet],
    se_urls: Mapping[str, str],
    workers: int = DEFAULT_WORKERS,
    on_done: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Fetch every file in a small thread pool (SE transfers wait on I/O, not the GIL)."""
    results: list[FileResult] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ds_get") as pool:
        futures = {pool.submit(get_one, item, se_urls): item for item in items}
        for future in as_completed(futures):
            item = futures[future]
            try:
                result = future.result()
            except (StorageError, OSError) as exc:
                result = FileResult(item.lfn, Outcome.FAILED, item.local, errors=[str(exc)])
            results.append(result)
            if on_done is not None:
                on_done(result)
    order = {item.lfn: i for i, item in enumerate(items)}
    results.sort(key=lambda r: order[r.lfn])
    return results
