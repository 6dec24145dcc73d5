"""adler32 as the grid writes it: 8 lowercase hex digits."""

from __future__ import annotations

import zlib
from pathlib import Path

_CHUNK = 1 << 20


def adler32_of_bytes(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def adler32_of_file(path: Path) -> str:
    value = 1
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"
