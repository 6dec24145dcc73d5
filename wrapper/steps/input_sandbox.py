"""Step 2: fetch the input sandbox (steering file + extra files) and unpack it safely.

A sandbox is user data: members that could write outside the work directory (absolute
names, `..`, links, devices) make the whole sandbox refused before anything is written.
"""

from __future__ import annotations

from gridpilot.archives import UnsafeArchiveError, safe_extract
from gridpilot.logs import get_logger
from wrapper.central import CentralError
from wrapper.context import JobContext
from wrapper.errors import ExitCategory, JobFailure

log = get_logger(__name__)

SANDBOX_FILE = "input_sandbox.tar.gz"


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
