"""Step 2: fetch the input sandbox (steering file + extra files) and unpack it safely.

A sandbox is user data: members that could write outside the work directory (absolute
names, `..`, links, devices) make the whole sandbox refused before anything is written.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from gridpilot.logs import get_logger
from wrapper.central import CentralError
from wrapper.context import JobContext
from wrapper.errors import ExitCategory, JobFailure

log = get_logger(__name__)

SANDBOX_FILE = "input_sandbox.tar.gz"
# A 10 MB compressed sandbox should never unpack to more than this.
MAX_UNPACKED_BYTES = 2 * 1024**3


class UnsafeArchiveError(ValueError):
    """The archive holds a member that must not be extracted."""


def check_member(member: tarfile.TarInfo, dest: Path) -> PurePosixPath:
    """The member's relative path when it is safe to extract under `dest`; else raise."""
    name = PurePosixPath(member.name)
    if name.is_absolute():
        raise UnsafeArchiveError(f"absolute path in sandbox: {member.name!r}")
    if ".." in name.parts:
        raise UnsafeArchiveError(f"path leaves the work directory: {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"only regular files and directories are allowed in a sandbox: {member.name!r}"
        )
    root = dest.resolve()
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise UnsafeArchiveError(f"path leaves the work directory: {member.name!r}")
    return name


def safe_extract(archive: Path, dest: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> list[str]:
    """Extract every member of the tar(.gz) into `dest`; the relative names of its files."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            names = [check_member(m, dest) for m in members]
            total = sum(m.size for m in members if m.isfile())
            if total > max_bytes:
                raise UnsafeArchiveError(
                    f"sandbox unpacks to {total} bytes, more than the {max_bytes} allowed"
                )
            # The data filter is a second line of defence (modes, owners, special bits).
            tar.extractall(dest, members=members, filter="data")
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"not a readable tar archive: {exc}") from exc
    return sorted(str(n) for n, m in zip(names, members, strict=True) if m.isfile())


def fetch_input_sandbox(ctx: JobContext) -> list[str]:
    """Download and unpack the job's input sandbox into the work dir; the files it held."""
    sandbox_id = ctx.job.spec.input_sandbox
    if not sandbox_id:
        return []
    archive = ctx.job_dir / SANDBOX_FILE
    try:
        size = ctx.central.download_sandbox(sandbox_id, archive)
    except CentralError as exc:
        raise JobFailure(
            ExitCategory.EXIT_CATEGORY_WRAPPER_ERROR,
            f"cannot download input sandbox {sandbox_id}: {exc}",
        ) from exc
    try:
        files = safe_extract(archive, ctx.work_dir)
    except UnsafeArchiveError as exc:
        raise JobFailure(
            ExitCategory.EXIT_CATEGORY_WRAPPER_ERROR, f"input sandbox {sandbox_id} refused: {exc}"
        ) from exc
    ctx.input_names.update(files)
    log.info("sandbox.extracted", sandbox_id=sandbox_id, size=size, files=len(files), **ctx.ids)
    return files
