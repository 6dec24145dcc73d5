"""Step 1: a fresh work directory for the payload, on a file system with room to run."""

from __future__ import annotations

import shutil

from gridpilot.logs import get_logger
from wrapper.context import JobContext
from wrapper.errors import ExitCategory, JobFailure
from wrapper.watchdog import disk_free

log = get_logger(__name__)
_MB = 1024 * 1024


def prepare_work_dir(ctx: JobContext) -> None:
    work = ctx.work_dir
    if work.exists():
        # Leftovers of an earlier run of this attempt must not be taken for outputs.
        shutil.rmtree(work)
    try:
        work.mkdir(parents=True)
    except OSError as exc:
        raise JobFailure(
            ExitCategory.EXIT_CATEGORY_WRAPPER_ERROR, f"cannot create work dir {work}: {exc}"
        ) from exc
    free = disk_free(work)
    needed = ctx.options.min_disk_free_mb * _MB
    if free < needed:
        raise JobFailure(
            ExitCategory.EXIT_CATEGORY_WRAPPER_ERROR,
            f"not enough disk space in {work}: {free // _MB} MB free, "
            f"{ctx.options.min_disk_free_mb} MB needed",
        )
    log.info("workdir.ready", path=str(work), free_mb=free // _MB, **ctx.ids)
