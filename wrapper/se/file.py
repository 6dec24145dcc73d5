"""The file:// storage plugin: an SE that is a directory on a locally mounted file system.

`file:///data/kek-se` + LFN `/belle/user/a/p/sub00/x.root`
is the path `/data/kek-se/belle/user/a/p/sub00/x.root`.
Writes go to a temporary name in the target directory and are renamed when complete and
fsynced, so a reader never sees half a file and a crash leaves no file under the real name.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from gridpilot.checksum import adler32_of_file
from wrapper.se.base import (
    SEFileNotFoundError,
    SEUnavailableError,
    SpaceUsage,
    StorageError,
    StoragePlugin,
    atomic_file,
    is_temporary,
    register_plugin,
)
from wrapper.se.credentials import StorageCredentials


@register_plugin
class FilePlugin(StoragePlugin):
    scheme = "file"

    def __init__(self, base_url: str, credentials: StorageCredentials | None = None) -> None:
        super().__init__(base_url, credentials)
        path = self.base_url.removeprefix("file://")
        if not path.startswith("/"):
            raise StorageError(f"file SE URL must hold an absolute path: {base_url!r}")
        self.root = Path(path)

    # -- helpers ---------------------------------------------------------------------------

    def _path(self, lfn: str) -> Path:
        return self.root.joinpath(*PurePosixPath(self.checked_lfn(lfn)).parts[1:])

    def _check_root(self, lfn: str) -> None:
        if not self.root.is_dir():
            raise SEUnavailableError(
                f"SE {self.base_url} is unavailable (root {self.root} is not a directory) for {lfn}"
            )

    @contextmanager
    def _mapped(self, op: str, lfn: str) -> Iterator[None]:
        """Turn OS errors on the SE side into the storage error tree."""
        try:
            yield
        except StorageError:
            raise
        except FileNotFoundError as exc:
            self._check_root(lfn)
            if op == "upload":
                # The SE lost a directory under our feet: that is the SE failing, not a miss.
                raise SEUnavailableError(
                    f"upload: SE {self.base_url} refused {lfn}: {exc.strerror}"
                ) from exc
            raise SEFileNotFoundError(f"{op}: {lfn} not found on SE {self.base_url}") from exc
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.ENOSPC:
                reason = "no space left on the SE"
            raise SEUnavailableError(f"{op}: SE {self.base_url} refused {lfn}: {reason}") from exc

    @staticmethod
    def _write_atomically(source: BinaryIO, dest: Path) -> None:
        with atomic_file(dest) as out:
            shutil.copyfileobj(source, out, 1 << 20)

    # -- the plugin interface --------------------------------------------------------------

    def upload(self, local: Path, lfn: str) -> None:
        target = self._path(lfn)
        try:
            source = local.open("rb")
        except OSError as exc:
            raise StorageError(
                f"upload of {lfn} to {self.base_url}: cannot read {local}: {exc}"
            ) from exc
        with source:
            self._check_root(lfn)
            with self._mapped("upload", lfn):
                target.parent.mkdir(parents=True, exist_ok=True)
                self._write_atomically(source, target)

    def download(self, lfn: str, local: Path) -> None:
        source_path = self._path(lfn)
        self._check_root(lfn)
        with self._mapped("download", lfn):
            if source_path.is_dir():
                raise SEFileNotFoundError(f"download: {lfn} is a directory on SE {self.base_url}")
            source = source_path.open("rb")
        with source:
            try:
                local.parent.mkdir(parents=True, exist_ok=True)
                self._write_atomically(source, local)
            except OSError as exc:
                raise StorageError(
                    f"download of {lfn} from {self.base_url}: cannot write {local}: {exc}"
                ) from exc

    def delete(self, lfn: str) -> None:
        path = self._path(lfn)
        self._check_root(lfn)
        with self._mapped("delete", lfn):
            path.unlink()

    def stat(self, lfn: str) -> int:
        path = self._path(lfn)
        self._check_root(lfn)
        with self._mapped("stat", lfn):
            if path.is_dir():
                raise SEFileNotFoundError(f"stat: {lfn} is a directory on SE {self.base_url}")
            return path.stat().st_size

    def checksum(self, lfn: str) -> str:
        path = self._path(lfn)
        self._check_root(lfn)
        with self._mapped("checksum", lfn):
            if path.is_dir():
                raise SEFileNotFoundError(f"checksum: {lfn} is a directory on SE {self.base_url}")
            return adler32_of_file(path)

    def list(self, lpn: str) -> list[str]:
        self._check_root(lpn)
        rel = PurePosixPath("/" + lpn.lstrip("/")).parts[1:]
        if any(p in ("..", ".") for p in rel):
            raise StorageError(f"invalid LPN {lpn!r} for SE {self.base_url}")
        top = self.root.joinpath(*rel)
        found: list[str] = []
        with self._mapped("list", lpn):
            if not top.exists():
                return []
            if not top.is_dir():
                raise SEUnavailableError(
                    f"list: {lpn} on SE {self.base_url} is a file, not a directory"
                )
            for dirpath, _dirs, files in os.walk(top, onerror=_raise):
                for name in files:
                    if is_temporary(name):
                        continue
                    rel_path = Path(dirpath, name).relative_to(self.root)
                    found.append("/" + rel_path.as_posix())
        return sorted(found)

    def space(self) -> SpaceUsage:
        self._check_root("/")
        with self._mapped("space", "/"):
            usage = shutil.disk_usage(self.root)
        return SpaceUsage(total_bytes=usage.total, free_bytes=usage.free)


def _raise(exc: OSError) -> None:
    raise exc
