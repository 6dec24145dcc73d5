"""The storage plugin interface and the registry of plugins by URL scheme.

An SE is named by a base URL (`file:///data/kek-se`, later `root://host:1094//belle`,
`davs://host/belle`); an LFN (`/belle/user/alice/p1/sub00/out_12_1.root`) is appended to it.
Calls are blocking: the wrapper is a process of its own, and async callers use a thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar


class StorageError(Exception):
    """An SE operation failed; the message names the SE URL and the LFN."""


class SEFileNotFoundError(StorageError):
    """The file is not on this SE."""


class SEUnavailableError(StorageError):
    """The SE cannot be reached or refuses the operation (down, read-only, full)."""


class StoragePlugin(ABC):
    scheme: ClassVar[str]

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def url_for(self, lfn: str) -> str:
        return self.base_url + "/" + lfn.lstrip("/")

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
        """LFNs of the files under directory `lpn` (recursive), sorted."""


_PLUGINS: dict[str, type[StoragePlugin]] = {}


def register_plugin(plugin: type[StoragePlugin]) -> type[StoragePlugin]:
    """Class decorator; refuses to silently replace a plugin for the same scheme."""
    existing = _PLUGINS.get(plugin.scheme)
    if existing is not None and existing is not plugin:
        raise ValueError(f"a storage plugin for {plugin.scheme}:// is already registered")
    _PLUGINS[plugin.scheme] = plugin
    return plugin


def open_storage(base_url: str) -> StoragePlugin:
    """The plugin for the URL's scheme, bound to that SE base URL."""
    # Importing the plugin modules registers them.
    from wrapper.se import file as _file  # noqa: F401, PLC0415

    scheme, sep, _ = base_url.partition("://")
    if not sep:
        raise StorageError(f"not an SE URL (no scheme): {base_url!r}")
    plugin = _PLUGINS.get(scheme)
    if plugin is None:
        known = ", ".join(sorted(_PLUGINS))
        raise StorageError(f"no storage plugin for {scheme}:// (known: {known})")
    return plugin(base_url)
