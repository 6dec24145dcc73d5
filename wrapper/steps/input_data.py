"""Step 3: stage in the input files, trying each file's replicas best-first.

Central orders replicas for the site (local SEs, then by learned cost or distance). A replica
is used only when the downloaded copy has the catalog's size and adler32; any failure moves
on to the next replica, and a copy that does not match is reported to central as suspect.
Every download is timed for central (it learns the site's SE costs from them). A file with no
usable replica fails the job as input data unavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gridpilot.checksum import adler32_of_file
from gridpilot.logs import get_logger
from gridpilot.v1 import data_pb2
from wrapper.central import CentralError
from wrapper.context import JobContext
from wrapper.data_access import DataAccessLog
from wrapper.errors import ExitCategory, JobFailure
from wrapper.se import StorageError, StoragePlugin, open_storage

log = get_logger(__name__)

Opener = Callable[[str], StoragePlugin]


class VerificationError(Exception):
    """A copy does not match the catalog's size or checksum."""


@dataclass(frozen=True)
class Candidate:
    se: str
    base_url: str


class StageInError(Exception):
    """No replica of one file could be used; `attempts` says why for each."""

    def __init__(self, lfn: str, attempts: list[str]) -> None:
        detail = "; ".join(attempts) if attempts else "no replicas in the catalog"
        super().__init__(f"no usable replica of {lfn}: {detail}")
        self.lfn = lfn
        self.attempts = attempts


def candidates(
    file: data_pb2.FileReplicas, se_urls: Mapping[str, str]
) -> tuple[list[Candidate], list[str]]:
    """Replicas in central's order as (SE, base URL), and a reason for each one skipped.

    The base URL comes from the SE registry; failing that, from the replica URL when it ends
    with the LFN (so a replica on an SE missing from the list is still usable).
    """
    found: list[Candidate] = []
    skipped: list[str] = []
    for replica in file.replicas:
        base = se_urls.get(replica.se)
        if base is None and replica.url.endswith(file.lfn):
            base = replica.url[: -len(file.lfn)]
        if not base:
            skipped.append(f"{replica.se}: unknown storage element")
            continue
        found.append(Candidate(se=replica.se, base_url=base))
    return found, skipped


def verify_copy(path: Path, size: int, adler32: str) -> None:
    """Raise VerificationError unless the file matches (an empty catalog value is not checked)."""
    actual_size = path.stat().st_size
    if size > 0 and actual_size != size:
        raise VerificationError(f"size {actual_size} != catalog size {size}")
    if adler32:
        actual = adler32_of_file(path)
        if actual != adler32.lower():
            raise VerificationError(f"adler32 {actual} != catalog adler32 {adler32.lower()}")


def stage_in_file(
    file: data_pb2.FileReplicas,
    dest: Path,
    se_urls: Mapping[str, str],
    opener: Opener = open_storage,
    *,
    access: DataAccessLog | None = None,
) -> str:
    """Download one LFN to `dest` from the first replica that works; the SE used."""
    found, attempts = candidates(file, se_urls)
    access = access if access is not None else DataAccessLog()
    for candidate in found:
        try:
            storage = opener(candidate.base_url)
            try:
                with access.transfer(candidate.se, "read", file.size):
                    storage.download(file.lfn, dest)
            finally:
                storage.close()
            verify_copy(dest, file.size, file.adler32)
        except VerificationError as exc:
            dest.unlink(missing_ok=True)
            access.suspect(file.lfn, candidate.se, str(exc))
            attempts.append(f"{candidate.se}: {exc}")
            log.error("stagein.bad_replica", lfn=file.lfn, se=candidate.se, error=str(exc))
            continue
        except (StorageError, OSError) as exc:
            dest.unlink(missing_ok=True)
            attempts.append(f"{candidate.se}: {exc}")
            log.warning("stagein.replica_failed", lfn=file.lfn, se=candidate.se, error=str(exc))
            continue
        return candidate.se
    raise StageInError(file.lfn, attempts)


def local_names(lfns: list[str]) -> list[str]:
    """The file name each LFN gets in the work dir; ValueError when two would collide."""
    names = [PurePosixPath(lfn).name for lfn in lfns]
    seen: set[str] = set()
    for lfn, name in zip(lfns, names, strict=True):
        if not name:
            raise ValueError(f"input LFN {lfn!r} has no file name")
        if name in seen:
            raise ValueError(f"two input LFNs share the file name {name!r}")
        seen.add(name)
    return names


def stage_in(ctx: JobContext, opener: Opener = open_storage) -> list[str]:
    """Download every input LFN into the work dir; the local names, in spec order."""
    lfns = list(ctx.job.spec.input_lfns)
    if not lfns:
        return []
    try:
        names = local_names(lfns)
    except ValueError as exc:
        raise JobFailure(ExitCategory.EXIT_CATEGORY_WRAPPER_ERROR, str(exc)) from exc
    unavailable = ExitCategory.EXIT_CATEGORY_INPUT_DATA_UNAVAILABLE
    try:
        files = {f.lfn: f for f in ctx.central.get_replicas(lfns, ctx.options.site)}
        se_urls = {name: se.url for name, se in ctx.storage_elements().items()}
    except CentralError as exc:
        raise JobFailure(unavailable, f"cannot look up replicas: {exc}") from exc
    for lfn, name in zip(lfns, names, strict=True):
        file = files.get(lfn)
        if file is None:
            raise JobFailure(unavailable, f"{lfn} is not in the replica catalog")
        try:
            se = stage_in_file(file, ctx.work_dir / name, se_urls, opener, access=ctx.data_access)
        except StageInError as exc:
            raise JobFailure(unavailable, str(exc)) from exc
        log.info("stagein.done", lfn=lfn, se=se, size=file.size, **ctx.ids)
    ctx.input_names.update(names)
    ctx.input_data_names = names
    return names
