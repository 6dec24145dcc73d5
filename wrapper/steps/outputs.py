"""Step 6: upload the payload's outputs, with failover.

Every attempt writes new names (`<stem>_<job_id>_<attempt><ext>`), so nothing is overwritten.
Each file goes to the job's output SE; when that fails (or the stored copy does not verify)
the failover SEs are tried in order and the OutputFile names the intended destination, so
central can queue a replication request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gridpilot.checksum import adler32_of_file
from gridpilot.logs import get_logger
from gridpilot.v1 import data_pb2, pilots_pb2
from wrapper.context import JobContext
from wrapper.data_access import DataAccessLog
from wrapper.errors import ExitCategory, JobFailure
from wrapper.se import StorageError, StoragePlugin, open_storage

log = get_logger(__name__)

Opener = Callable[[str], StoragePlugin]
DEFAULT_PATTERNS = ("*.root",)
LFN_ROOT = "/belle/user"


class UploadError(Exception):
    """No SE took (and verified) the file; `attempts` says why for each."""

    def __init__(self, lfn: str, attempts: list[str]) -> None:
        detail = "; ".join(attempts) if attempts else "no storage element to try"
        super().__init__(f"cannot store {lfn}: {detail}")
        self.lfn = lfn
        self.attempts = attempts


def _check_component(kind: str, value: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"invalid {kind} {value!r} for an output LFN")
    return value


def output_lfn(owner: str, project: str, filename: str, job_id: int, attempt: int) -> str:
    """`/belle/user/<owner>/<project>/sub00/<stem>_<job_id>_<attempt><ext>`."""
    name = PurePosixPath(_check_component("file name", filename))
    stem, ext = name.stem, name.suffix
    return (
        f"{LFN_ROOT}/{_check_component('owner', owner)}/{_check_component('project', project)}"
        f"/sub00/{stem}_{job_id}_{attempt}{ext}"
    )


def find_outputs(work_dir: Path, patterns: Iterable[str], exclude: set[str]) -> list[Path]:
    """Files in `work_dir` matching any pattern, minus the inputs (`exclude`, relative names)."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        for path in work_dir.glob(pattern):
            rel = path.relative_to(work_dir).as_posix()
            if path.is_file() and not path.is_symlink() and rel not in exclude:
                found[rel] = path
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class Target:
    se: str
    base_url: str | None
    # Why this SE cannot be used at all (unknown, writes disabled); None when usable.
    refusal: str | None = None


def upload_targets(
    output_se: str, failover_ses: Iterable[str], registry: Mapping[str, data_pb2.StorageElement]
) -> list[Target]:
    """The output SE, then each failover SE once, in order."""
    targets: list[Target] = []
    seen: set[str] = set()
    for name in [output_se, *failover_ses]:
        if not name or name in seen:
            continue
        seen.add(name)
        se = registry.get(name)
        if se is None:
            targets.append(Target(name, None, "unknown storage element"))
        elif not se.writable:
            targets.append(Target(name, se.url, se.write_refusal or "takes no writes"))
        else:
            targets.append(Target(name, se.url))
    return targets


def upload_file(
    local: Path,
    lfn: str,
    targets: list[Target],
    destination_se: str,
    opener: Opener = open_storage,
    *,
    access: DataAccessLog | None = None,
) -> pilots_pb2.OutputFile:
    """Store `local` as `lfn` on the first target that takes and verifies it."""
    size = local.stat().st_size
    adler32 = adler32_of_file(local)
    access = access if access is not None else DataAccessLog()
    attempts: list[str] = []
    for target in targets:
        if target.refusal is not None or target.base_url is None:
            attempts.append(f"{target.se}: {target.refusal}")
            continue
        try:
            storage = opener(target.base_url)
            with access.transfer(target.se, "write", size):
                storage.upload(local, lfn)
            stored_size, stored_sum = storage.stat(lfn), storage.checksum(lfn)
        except StorageError as exc:
            attempts.append(f"{target.se}: {exc}")
            log.warning("stageout.se_failed", lfn=lfn, se=target.se, error=str(exc))
            continue
        if (stored_size, stored_sum) != (size, adler32):
            attempts.append(
                f"{target.se}: stored copy has size {stored_size} adler32 {stored_sum}, "
                f"expected {size} {adler32}"
            )
            _delete_quietly(storage, lfn)
            continue
        on_failover = target.se != destination_se
        return pilots_pb2.OutputFile(
            lfn=lfn,
            se=target.se,
            size=size,
            adler32=adler32,
            destination_se=destination_se if on_failover else "",
        )
    raise UploadError(lfn, attempts)


def _delete_quietly(storage: StoragePlugin, lfn: str) -> None:
    try:
        storage.delete(lfn)
    except StorageError as exc:
        log.warning("stageout.cleanup_failed", lfn=lfn, error=str(exc))


def stage_out(ctx: JobContext, opener: Opener = open_storage) -> list[pilots_pb2.OutputFile]:
    """Upload every output; JobFailure(UPLOAD_FAILED) carrying the stored ones if any fails."""
    spec, job = ctx.job.spec, ctx.job
    patterns = list(spec.output_patterns) or list(DEFAULT_PATTERNS)
    files = find_outputs(ctx.work_dir, patterns, ctx.input_names)
    if not files:
        log.info("stageout.no_outputs", patterns=",".join(patterns), **ctx.ids)
        return []
    targets = upload_targets(job.output_se, job.failover_ses, ctx.storage_elements())
    stored: list[pilots_pb2.OutputFile] = []
    errors: list[str] = []
    for path in files:
        try:
            lfn = output_lfn(spec.owner, spec.project, path.name, job.job_id, job.attempt)
            out = upload_file(path, lfn, targets, job.output_se, opener, access=ctx.data_access)
        except (ValueError, UploadError, OSError) as exc:
            errors.append(str(exc))
            log.error("stageout.failed", file=path.name, error=str(exc), **ctx.ids)
            continue
        stored.append(out)
        log.info(
            "stageout.done",
            lfn=out.lfn,
            se=out.se,
            destination_se=out.destination_se,
            size=out.size,
            **ctx.ids,
        )
    if errors:
        raise JobFailure(
            ExitCategory.EXIT_CATEGORY_UPLOAD_FAILED, "; ".join(errors), outputs=stored
        )
    return stored
