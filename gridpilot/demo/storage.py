"""The demo's storage elements: directories (the default) or real XRootD servers.

Both kinds do the same four things for the demo: name each SE's URL for central's
configuration, come up, go down for the scripted outage (every read and write fails, as when
an SE is really down), and come back. Files reach them only through the storage plugins, as
they would on the grid.
"""

from __future__ import annotations

import abc
import shutil
import tempfile
from pathlib import Path

from gridpilot.demo.xrootd import PACKAGES, XrootdServer, launch, xrootd_available

KINDS = ("directories", "xrootd")


class DemoStorage(abc.ABC):
    kind: str

    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self.names = names

    @abc.abstractmethod
    def url(self, name: str) -> str:
        """The SE's base URL for central's configuration."""

    @abc.abstractmethod
    def take_offline(self, name: str) -> None: ...

    @abc.abstractmethod
    def bring_online(self, name: str) -> None: ...

    @abc.abstractmethod
    def is_offline(self, name: str) -> bool: ...

    def close(self) -> None:
        """Bring every SE down for good. Does nothing by default."""
        return None


class DirectoryStorage(DemoStorage):
    """Each SE is a directory; while it is down its root is a plain file instead."""

    kind = "directories"

    def __init__(self, root: Path, names: list[str]) -> None:
        super().__init__(root, names)
        for name in names:
            self._path(name).mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / name

    def _parked(self, name: str) -> Path:
        return self.root / f"{name}.offline"

    def url(self, name: str) -> str:
        return self._path(name).as_uri()

    def take_offline(self, name: str) -> None:
        path = self._path(name)
        path.rename(self._parked(name))
        path.write_text("this storage element is down for the demo\n")

    def is_offline(self, name: str) -> bool:
        return self._parked(name).is_dir()

    def bring_online(self, name: str) -> None:
        if self.is_offline(name):
            self._path(name).unlink(missing_ok=True)
            self._parked(name).rename(self._path(name))


class XrootdStorage(DemoStorage):
    """Each SE is an xrootd server on 127.0.0.1; while it is down its server is stopped."""

    kind = "xrootd"

    def __init__(self, root: Path, names: list[str]) -> None:
        super().__init__(root, names)
        if not xrootd_available():
            raise RuntimeError(
                "--se xrootd needs root and the XRootD server: "
                f"apt-get install -y {' '.join(PACKAGES)}"
            )
        # The servers run as the xrootd user, which must be able to enter their directories.
        self._base = Path(tempfile.mkdtemp(prefix="gridpilot-demo-xrootd-"))
        self._base.chmod(0o755)
        self._servers: dict[str, XrootdServer] = {}
        try:
            for name in names:
                safe = name.lower()
                self._servers[name] = launch(self._base / safe, safe)
        except BaseException:
            self.close()
            raise

    def url(self, name: str) -> str:
        return self._servers[name].url

    def take_offline(self, name: str) -> None:
        self._servers[name].stop()

    def is_offline(self, name: str) -> bool:
        return not self._servers[name].running

    def bring_online(self, name: str) -> None:
        self._servers[name].start()

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        shutil.rmtree(self._base, ignore_errors=True)


def create_storage(kind: str, root: Path, names: list[str]) -> DemoStorage:
    if kind == "xrootd":
        return XrootdStorage(root, names)
    if kind == "directories":
        return DirectoryStorage(root, names)
    raise ValueError(f"unknown demo storage {kind!r} (one of {', '.join(KINDS)})")
