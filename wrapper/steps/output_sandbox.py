"""Step 7: the output sandbox: payload.log and wrapper.log, size-capped, as a tar.gz.

A runaway payload can write gigabytes of log; the sandbox keeps each log's head and tail
(where the setup and the error usually are) within the cap, with a marker in between.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from gridpilot.logs import get_logger
from wrapper.central import CentralError
from wrapper.context import JobContext

log = get_logger(__name__)

SANDBOX_FILE = "output_sandbox.tar.gz"
# Total for all logs before compression; central's default sandbox limit is 10 MB.
LOG_CAP_BYTES = 5 * 1024 * 1024
_HEAD_SHARE = 0.2


def _join(head: bytes, tail: bytes, total: int, limit: int) -> bytes:
    """The first bytes of `head` and the last of `tail` (ends of a `total`-byte text)."""
    marker_len = len(f"\n[... {total} bytes cut by the gridpilot wrapper ...]\n".encode())
    room = limit - marker_len
    if room <= 0:
        return head[:limit]
    head_len = int(room * _HEAD_SHARE)
    tail_len = room - head_len
    marker = f"\n[... {total - room} bytes cut by the gridpilot wrapper ...]\n".encode()
    return head[:head_len] + marker + (tail[-tail_len:] if tail_len else b"")


def truncate_middle(data: bytes, limit: int) -> bytes:
    """`data` if it fits in `limit` bytes, else its head and tail around a marker line."""
    if len(data) <= limit:
        return data
    return _join(data, data, len(data), limit)


def _read_capped(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        if size <= limit:
            return f.read()
        # Read only the two ends of a huge log, never the whole file.
        head = f.read(limit)
        f.seek(max(0, size - limit))
        tail = f.read(limit)
    return _join(head, tail, size, limit)


def build_output_sandbox(files: list[Path], dest: Path, cap: int = LOG_CAP_BYTES) -> Path:
    """Write a tar.gz of the existing `files` (each capped at its share of `cap`) to `dest`."""
    present = [p for p in files if p.is_file()]
    share = cap // max(1, len(present))
    now = time.time()
    with tarfile.open(dest, "w:gz") as tar:
        for path in present:
            data = _read_capped(path, share)
            info = tarfile.TarInfo(path.name)
            info.size = len(data)
            info.mtime = int(now)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return dest


def send_output_sandbox(ctx: JobContext) -> str:
    """Pack and upload the logs; the sandbox id, or "" when that failed (never fatal)."""
    try:
        archive = build_output_sandbox(
            [ctx.payload_log, ctx.wrapper_log], ctx.job_dir / SANDBOX_FILE
        )
        sandbox_id = ctx.central.upload_sandbox(archive)
    except (OSError, tarfile.TarError, CentralError) as exc:
        log.warning("sandbox.output_failed", error=str(exc), **ctx.ids)
        return ""
    log.info("sandbox.output_uploaded", sandbox_id=sandbox_id, **ctx.ids)
    return sandbox_id
