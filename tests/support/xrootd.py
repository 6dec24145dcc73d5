"""Real XRootD servers (gridpilot/demo/xrootd.py) as storage elements for tests.

    with running_xrootd(name="kek-se") as server:
        storage = open_storage(server.url)   # root://127.0.0.1:PORT//kek-se

Each server gets a private directory made with mkdtemp under /tmp (the server runs as the
`xrootd` user, which cannot enter pytest's 0700 temporary directories). See
/work/shared/BACKENDS.md "XRootD storage elements".
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gridpilot.demo.xrootd import (
    PACKAGES,
    XROOTD,
    XrootdServer,
    free_port,
    launch,
    xrootd_available,
)
from tests.support.backends import require_debian_backend

__all__ = ["XrootdServer", "free_port", "require_xrootd", "running_xrootd", "xrootd_available"]


def require_xrootd() -> None:
    """Skip (outside CI) or fail (CI) when the XRootD server or root is missing; installs
    the Debian packages first when it can (tests/support/backends.py)."""
    require_debian_backend(
        "XRootD server (run as root)", PACKAGES, [XROOTD, "xrdfs"], xrootd_available
    )


@contextlib.contextmanager
def running_xrootd(
    directory: Path | None = None,
    name: str = "se",
    *,
    size_limit_bytes: int | None = None,
    checksum: bool = True,
) -> Iterator[XrootdServer]:
    """A started server in a fresh private directory (made under `directory`, default
    /tmp); stopped, unmounted and removed afterwards. `checksum=False` leaves out
    `xrootd.chksum`, for an SE that offers no checksums."""
    require_xrootd()
    root = Path(tempfile.mkdtemp(prefix=f"gridpilot-xrootd-{name}-", dir=directory or "/tmp"))
    try:
        server = launch(root, name, size_limit_bytes=size_limit_bytes, checksum=checksum)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)
