"""Sandbox bytes on disk, addressed by content: `root/<id[:2]>/<id>` with id = sha256 hex.

An upload streams into `root/tmp/` and is renamed into place only once complete, fsynced and
hashed, so a file under an id is always whole and always matches its id. The metadata (owner,
kind, job) lives in the store; this module only keeps the bytes.

    upload = sandboxes.begin_upload()
    async with upload:               # aborts (removes the partial file) unless finished
        async for chunk in request_chunks:
            await upload.write(chunk)   # SandboxTooLargeError once over the limit
        sandbox_id, size = await upload.finish()
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from gridpilot.logs import get_logger

log = get_logger(__name__)

_ID_RE = re.compile(r"[0-9a-f]{64}")
DEFAULT_CHUNK_SIZE = 256 * 1024


def _human(size: int) -> str:
    if size >= 1_000_000:
        text = f"{size / 1_000_000:.1f}".removesuffix(".0")
        return f"{text} MB"
    if size >= 1_000:
        text = f"{size / 1_000:.1f}".removesuffix(".0")
        return f"{text} kB"
    return f"{size} bytes"


class SandboxTooLargeError(ValueError):
    """An upload went over the configured sandbox size limit."""

    def __init__(self, size: int, limit: int) -> None:
        shown, shown_limit = _human(size), _human(limit)
        if shown == shown_limit:
            # Rounding would make the size look equal to the limit; show the exact bytes.
            shown, shown_limit = f"{size} bytes", f"{limit} bytes"
        super().__init__(f"sandbox of {shown} exceeds the {shown_limit} limit")
        self.size = size
        self.limit = limit


class InvalidSandboxIdError(ValueError):
    """Not a sandbox id (64 lowercase hex digits); never used to build a path."""

    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"invalid sandbox id {sandbox_id!r} (expected 64 lowercase hex digits)")
        self.sandbox_id = sandbox_id


class SandboxNotFoundError(LookupError):
    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"sandbox {sandbox_id} not found")
        self.sandbox_id = sandbox_id


class UploadStateError(RuntimeError):
    """write/finish on an upload that is already finished or aborted."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Upload:
    """One sandbox being received. Not safe for concurrent writers: one stream, one Upload."""

    def __init__(self, store: SandboxStore, file: BinaryIO, partial: Path) -> None:
        self._store = store
        self._file = file
        self.partial = partial
        self._sha = hashlib.sha256()
        self.size = 0
        self._done = False

    def _check_open(self) -> None:
        if self._done:
            raise UploadStateError(f"upload {self.partial.name} is already finished or aborted")

    def _write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._sha.update(chunk)

    async def write(self, chunk: bytes) -> None:
        self._check_open()
        size = self.size + len(chunk)
        if size > self._store.max_bytes:
            await self.abort()
            raise SandboxTooLargeError(size, self._store.max_bytes)
        self.size = size
        try:
            await asyncio.to_thread(self._write, chunk)
        except BaseException:
            await self.abort()
            raise

    def _finish(self) -> tuple[str, int]:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sandbox_id = self._sha.hexdigest()
        target = self._store.path_of(sandbox_id)
        if target.exists():
            # Same content already stored: the id is the content, so keep the existing file.
            self.partial.unlink()
        else:
            target.parent.mkdir(exist_ok=True)
            os.replace(self.partial, target)
            _fsync_dir(target.parent)
        return sandbox_id, self.size

    async def finish(self) -> tuple[str, int]:
        """Put the sandbox in place (durably) and return (sandbox id, size in bytes)."""
        self._check_open()
        self._done = True
        try:
            sandbox_id, size = await asyncio.to_thread(self._finish)
        except BaseException:
            await asyncio.to_thread(self._discard)
            raise
        log.debug("sandbox.stored", sandbox_id=sandbox_id, size=size)
        return sandbox_id, size

    def _discard(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)

    async def abort(self) -> None:
        """Drop the partial file; harmless after finish() or a previous abort()."""
        if self._done:
            return
        self._done = True
        await asyncio.to_thread(self._discard)

    async def __aenter__(self) -> Upload:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.abort()


class SandboxStore:
    """Content-addressed sandbox files under `root`, each at most `max_bytes` long."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"sandbox size limit must be positive, not {max_bytes}")
        self.root = root
        self.max_bytes = max_bytes
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_of(self, sandbox_id: str) -> Path:
        """Where the sandbox lives (whether or not it exists); InvalidSandboxIdError if the
        id is not a sha256 hex digest, so no caller-supplied text reaches the file system."""
        if not _ID_RE.fullmatch(sandbox_id):
            raise InvalidSandboxIdError(sandbox_id)
        return self.root / sandbox_id[:2] / sandbox_id

    def check_size(self, size: int) -> None:
        """Refuse a declared size up front, before any byte is received."""
        if size > self.max_bytes:
            raise SandboxTooLargeError(size, self.max_bytes)

    def begin_upload(self) -> Upload:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-", suffix=".part")
        return Upload(self, os.fdopen(fd, "wb"), Path(name))

    def open_read(self, sandbox_id: str) -> Path | None:
        """The sandbox file, or None when no sandbox has this id."""
        path = self.path_of(sandbox_id)
        return path if path.is_file() else None

    async def iter_chunks(
        self, sandbox_id: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """The sandbox's bytes in chunks; SandboxNotFoundError when it does not exist."""
        path = self.open_read(sandbox_id)
        if path is None:
            raise SandboxNotFoundError(sandbox_id)
        file = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk
        finally:
            file.close()

    def remove_stale_partials(self, older_than: float = 24 * 3600.0) -> int:
        """Remove partial uploads left by a crash (older than `older_than` seconds, so uploads
        in flight in another process sharing the directory survive). Returns how many."""
        cutoff = time.time() - older_than
        removed = 0
        for partial in self.tmp.glob("upload-*.part"):
            try:
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("sandbox.partials_removed", count=removed)
        return removed
