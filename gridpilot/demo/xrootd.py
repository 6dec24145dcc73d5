"""Local XRootD servers (Debian's xrootd 5) as storage elements: for `gridpilot demo --se
xrootd` and the tests.

Each server has a private directory (its config, admin and pid directory, log, and `data/`,
the oss.localroot) that the `xrootd` user can enter. The server runs in the foreground as
that user, as a child of this process, and is stopped by its PID; `stop()` and `start()` take
it down and bring it back on the same port with the same data, as an SE that is down for a
while. With `size_limit_bytes` the data directory is a tmpfs of that size (mounting needs
root, as running the server as its own user does), so `query space` reports a small SE that
uploads genuinely fill.

XRootD 5 has no directive to listen on one address only: the server listens on all
interfaces (`xrd.port` takes a port and host conditions, nothing else). `xrd.allow host
127.0.0.1` makes it refuse every connection that does not come from this machine's loopback.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import socket
import stat
import subprocess
import time
from pathlib import Path

from gridpilot.processes import as_user, stop_child

USER = "xrootd"
XROOTD = "/usr/bin/xrootd"
PACKAGES = ("xrootd-server", "xrootd-client", "xrootd-server-plugins")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
_COMMAND_TIMEOUT = 15.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def xrootd_available() -> bool:
    """The server program, its user, and root (to run it as that user and mount tmpfs)."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return False
    return os.geteuid() == 0 and os.access(XROOTD, os.X_OK)


def free_port() -> int:
    # The server binds every interface, so the port must be free on all of them.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


def _enterable_by_xrootd(path: Path) -> bool:
    entry = pwd.getpwnam(USER)
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if USER in g.gr_mem}
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == entry.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _config(*, port: int, data_dir: Path, admin_dir: Path, checksum: bool, base_path: str) -> str:
    lines = [
        f"xrd.port {port}",
        # The server listens on every interface; this refuses every other peer.
        "xrd.allow host 127.0.0.1",
        "all.role server",
        "all.export /",
        f"oss.localroot {data_dir}",
        f"all.adminpath {admin_dir}",
        f"all.pidpath {admin_dir}",
        # POSC files a client abandoned go at once (default: held 600 s for it to return).
        "ofs.persist manual hold 0",
    ]
    if checksum:
        lines.append("xrootd.chksum adler32")
    return "\n".join([f"# gridpilot SE, base path {base_path}", *lines, ""])


class XrootdServer:
    """One xrootd process serving `data_dir` at `url`; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        name: str,
        *,
        size_limit_bytes: int | None = None,
        checksum: bool = True,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"SE name must be letters, digits, '-' and '_': {name!r}")
        self.directory = directory
        self.name = name
        self.size_limit_bytes = size_limit_bytes
        self.checksum = checksum
        self.port = free_port()
        # The SE's base path on the server: LFNs go below it.
        self.base_path = f"/{name}"
        self.data_dir = directory / "data"
        self.admin_dir = directory / "admin"
        self.config = directory / "xrootd.cfg"
        self.log = directory / "xrootd.log"
        self.output = directory / "xrootd.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._mounted = False

    @property
    def url(self) -> str:
        """The SE base URL for `open_storage`."""
        return f"root://127.0.0.1:{self.port}/{self.base_path}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The xrootd process's PID; RuntimeError when the server is stopped."""
        if self._proc is None or not self.running:
            raise RuntimeError(f"xrootd {self.name} is not running")
        return self._proc.pid

    def data_path(self, lfn: str) -> Path:
        """Where the server keeps the file of `lfn` on disk (to corrupt it behind its back)."""
        parts = [p for p in lfn.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"invalid LFN {lfn!r}")
        return self.data_dir.joinpath(self.name, *parts)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.log, self.output):
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ---- life cycle ----

    def prepare(self) -> None:
        """Write the config and make the directories (and the tmpfs) the server uses."""
        entry = pwd.getpwnam(USER)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        if not _enterable_by_xrootd(self.directory):
            raise RuntimeError(f"the {USER} user cannot enter {self.directory} (or a parent)")
        for path in (self.data_dir, self.admin_dir):
            path.mkdir(exist_ok=True)
        if self.size_limit_bytes is not None and not self._mounted:
            size, uid, gid = self.size_limit_bytes, entry.pw_uid, entry.pw_gid
            options = f"size={size},mode=0755,uid={uid},gid={gid}"
            mount = ["mount", "-t", "tmpfs", "-o", options, f"gridpilot-{self.name}"]
            subprocess.run(
                [*mount, str(self.data_dir)],
                check=True,
                capture_output=True,
                timeout=_COMMAND_TIMEOUT,
            )
            self._mounted = True
        self.config.write_text(
            _config(
                port=self.port,
                data_dir=self.data_dir,
                admin_dir=self.admin_dir,
                checksum=self.checksum,
                base_path=self.base_path,
            )
        )
        for path in (self.directory, self.data_dir, self.admin_dir, self.config):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        """Start the server (again: same port, same data) and wait until it serves."""
        if self.running:
            return
        log_size = self.log.stat().st_size if self.log.exists() else 0
        with self.output.open("ab") as output:
            self._proc = subprocess.Popen(
                # -l =FILE: exactly this log file (without "=", xrootd inserts the name).
                as_user(
                    [XROOTD, "-c", str(self.config), "-l", f"={self.log}", "-n", self.name], USER
                ),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        try:
            self._wait_ready(log_size)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, log_size: int) -> None:
        # The port answers before the protocol is loaded; the log says when it is.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"xrootd {self.name} exited with {self._proc.returncode}\n{self.log_tail()}"
                )
            if self._log_since(log_size).find("initialization completed") >= 0:
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"xrootd {self.name} did not serve port {self.port} within "
                    f"{START_TIMEOUT} s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after STOP_TIMEOUT; the data stays for `start()`."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_child(proc, STOP_TIMEOUT)

    def close(self) -> None:
        """Stop for good: stop the server and unmount its tmpfs."""
        self.stop()
        if self._mounted:
            done = subprocess.run(
                ["umount", self.data_dir],
                capture_output=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
            if done.returncode != 0:
                # Something still has a file open there: detach it now, freed when released.
                subprocess.run(
                    ["umount", "-l", self.data_dir],
                    capture_output=True,
                    timeout=_COMMAND_TIMEOUT,
                    check=True,
                )
            self._mounted = False


def launch(
    directory: Path, name: str, *, size_limit_bytes: int | None = None, checksum: bool = True
) -> XrootdServer:
    """A prepared and started server in `directory` (which the xrootd user must be able to
    enter); `close()` it when done. `checksum=False` leaves out `xrootd.chksum`."""
    server = XrootdServer(directory, name, size_limit_bytes=size_limit_bytes, checksum=checksum)
    for attempt in range(3):
        server.prepare()
        try:
            server.start()
            return server
        except RuntimeError:
            # Another process took the free port before the server bound it: pick again.
            if attempt == 2 or "already in use" not in server.log_tail():
                server.close()
                raise
            server.port = free_port()
    raise AssertionError("unreachable")
