"""The last lines of a log file, read from the end (payload logs can be gigabytes)."""

from __future__ import annotations

import os
from pathlib import Path

_BLOCK = 8192


def tail_lines(
    path: Path, count: int = 20, *, max_line_chars: int = 500, max_bytes: int = 256 * 1024
) -> list[str]:
    """Up to `count` last lines of `path` (no trailing newlines); [] if it does not exist.

    Reads at most `max_bytes` from the end, so one huge line cannot make a heartbeat huge;
    each line is cut to `max_line_chars`. Undecodable bytes are replaced, not fatal.
    """
    if count <= 0:
        return []
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            data = b""
            pos = end
            while pos > 0 and data.count(b"\n") <= count and end - pos < max_bytes:
                step = min(_BLOCK, pos, max_bytes - (end - pos))
                pos -= step
                handle.seek(pos)
                data = handle.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    # A partial first line (we started mid-line) is still worth showing, cut like the others.
    return [line[:max_line_chars] for line in lines[-count:]]
