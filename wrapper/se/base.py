"""The storage plugin interface and the registry of plugins by URL scheme.

An SE is named by a base URL (`file:///data/kek-se`, `root://host:1094//belle`,
`davs://host/belle`); an LFN (`/belle/user/alice/p1/sub00/out_12_1.root`) is appended to it.
Calls are blocking: the wrapper is a process of its own, and async callers use a thread.

Plugins live in their own modules (wrapper/se/file.py, xrootd.py, webdav.py) and are imported
when a URL of their scheme is first opened, so a process that never reads `root://` does not
need the XRootD bindings.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, ClassVar

if TYPE_CHECKING:
    from wrapper.se.credentials import StorageCredentials


# Files being written (on an SE, or locally by a download) carry a temporary name beside their
# final one until complete; listings skip them, and an interrupted run's leftovers are known.
TEMP_PREFIX = ".gridpilot-"
TEMP_SUFFIX = ".part"


def is_temporary(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def temporary_name() -> str:
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"


@contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """A file to write `dest` through: a temporary name beside it, fsynced and renamed over
    `dest` (mode 0644) when the block ends, removed when it raises. Nobody ever sees half a
    file under the real name, and a crash leaves none there. Raises OSError."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename is durable only once the directory entry is on disk.
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StorageError(Exception):
    """An SE operation failed; the message names the SE URL and the LFN."""


class SEFileNotFoundError(StorageError):
    """The file is not on this SE."""


class SEUnavailableError(StorageError):
    """The SE cannot be reached or refuses the operation (down, read-only, full)."""


class SENotSupportedError(StorageError):
    """The plugin (or the server behind it) does not offer this operation."""


@dataclass(frozen=True)
class SpaceUsage:
    """An SE's space as the SE itself reports it."""

    total_bytes: int
    free_bytes: int

    @property
    def used_bytes(self) -> int:
        return max(self.total_bytes - self.free_bytes, 0)

    @property
    def used_fraction(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes > 0 else 1.0


class StoragePlugin(ABC):
    scheme: ClassVar[str]

    def __init__(self, base_url: str, credentials: StorageCredentials | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials

    def url_for(self, lfn: str) -> str:
        return self.base_url + "/" + lfn.lstrip("/")

    def checked_lfn(self, lfn: str) -> str:
        """The LFN as an absolute path of plain names; StorageError for '..' or nothing."""
        parts = PurePosixPath("/" + lfn.lstrip("/")).parts[1:]
        if not parts or any(p in ("..", ".") for p in parts):
            raise StorageError(f"invalid LFN {lfn!r} for SE {self.base_url}")
        return "/" + "/".join(parts)

    @abstractmethod
    def upload(self, local: Path, lfn: str) -> None:
        """Copy a local file to the SE, creating directories; an existing file is replaced."""

    @abstractmethod
    def download(self, lfn: str, local: Path) -> None:
        """Copy the file to `local` (written under a temporary name, renamed when complete)."""

    @abstractmethod
    def delete(self, lfn: str) -> None:
        """Remove the file; SEFileNotFoundError if it is not there."""

    @abstractmethod
    def stat(self, lfn: str) -> int:
        """Size in bytes; SEFileNotFoundError if absent."""

    @abstractmethod
    def checksum(self, lfn: str) -> str:
        """adler32 as 8 lowercase hex digits: from the server when it offers one, else computed."""

    @abstractmethod
    def list(self, lpn: str) -> list[str]:
        """LFNs of the files under directory `lpn` (recursive), sorted; [] when absent."""

    def space(self) -> SpaceUsage:
        """Total and free bytes as the SE reports them. Optional: SENotSupportedError when
        the server does not say."""
        raise SENotSupportedError(f"SE {self.base_url} does not report its space")

    def close(self) -> None:
        """Release connections. Does nothing by default."""
        return None


_PLUGINS: dict[str, type[StoragePlugin]] = {}
# Scheme -> the module whose import registers its plugin.
_PLUGIN_MODULES = {
    "file": "wrapper.se.file",
    "root": "wrapper.se.xrootd",
    "davs": "wrapper.se.webdav",
    "https": "wrapper.se.webdav",
}


def register_plugin(plugin: type[StoragePlugin]) -> type[StoragePlugin]:
    """Class decorator; refuses to silently replace a plugin for the same scheme."""
    existing = _PLUGINS.get(plugin.scheme)
    if existing is not None and existing is not plugin:
        raise ValueError(f"a storage plugin for {plugin.scheme}:// is already registered")
    _PLUGINS[plugin.scheme] = plugin
    return plugin


def known_schemes() -> list[str]:
    return sorted(_PLUGIN_MODULES)


def open_storage(base_url: str, credentials: StorageCredentials | None = None) -> StoragePlugin:
    """The plugin for the URL's scheme, bound to that SE base URL; `credentials` default to
    what the environment provides (wrapper/se/credentials.py)."""
    scheme, sep, _ = base_url.partition("://")
    if not sep:
        raise StorageError(f"not an SE URL (no scheme): {base_url!r}")
    module = _PLUGIN_MODULES.get(scheme)
    if module is None:
        raise StorageError(
            f"no storage plugin for {scheme}:// (known: {', '.join(known_schemes())})"
        )
    if scheme not in _PLUGINS:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise StorageError(
                f"the {scheme}:// storage plugin cannot load ({exc}); "
                "is gridpilot installed with its dependencies?"
            ) from exc
    if credentials is None:
        from wrapper.se.credentials import StorageCredentials  # noqa: PLC0415 -- import cycle

        credentials = StorageCredentials.from_environment()
    return _PLUGINS[scheme](base_url, credentials)
