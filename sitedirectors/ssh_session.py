"""One SSH connection (asyncssh) for a backend, usable from the director's synchronous code.

The backends are synchronous; asyncssh is not. An `SshSession` owns a private event loop in
a daemon thread and runs every operation there (`asyncio.run_coroutine_threadsafe`, bounded
by a timeout on both sides), over one connection opened on first use and opened again when
it was lost (the server restarted, the network dropped: keepalives notice a silent death).
An operation that fails because the connection went away is not retried here -- starting a
pilot twice is worse than starting it one cycle later -- it raises a transient error, and the
next operation reconnects.

On top of it, the two interfaces of sitedirectors/remote.py, so the SLURM backend runs
unchanged on a login node reached over SSH:

- `SshRunner`: argv joined with `shlex.quote` into the one string the remote shell reads;
  environment variables through `env NAME=VALUE ...`, since sshd accepts almost none;
- `SftpFiles`: files written under a temporary name with their final mode set before any
  content, then renamed into place (`posix-rename@openssh.com`); tails read with a seek.

Errors: refused keys and unknown or changed host keys are permanent (`transient=False`) with
a message that says which; refused or timed-out connections and lost ones are transient.
Connection problems raise `SshError`, which is both a `CommandError` and an `OSError`, so
callers of either interface handle them like their other failures; SFTP status errors
become the matching `OSError` (`FileNotFoundError`, `PermissionError`, ...).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import posixpath
import shlex
import stat
import threading
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.utils import CryptographyDeprecationWarning

# asyncssh still imports cryptography's deprecated DSA types; the warning is theirs to fix and
# would otherwise land on the stderr of every director command (whose errors are one line).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh

from gridpilot.logs import get_logger
from sitedirectors.remote import DEFAULT_COMMAND_TIMEOUT, CommandError, CommandResult, tail_text

log = get_logger(__name__)

T = TypeVar("T")

_KEEPALIVE_INTERVAL = 15.0
_KEEPALIVE_COUNT_MAX = 3
# The calling thread waits this much longer than the operation's own timeout, so the timeout
# inside the loop (which cancels the operation cleanly) normally fires first.
_CALL_SLACK = 5.0
_CLOSE_TIMEOUT = 5.0
_COPY_CHUNK = 1 << 20
# Uploads get this much time per byte on top of the command timeout (1 MB/s at worst).
_SECONDS_PER_BYTE = 1e-6
# asyncssh's code for a refused session request (here: the sftp subsystem).
_SESSION_REQUEST_FAILED = asyncssh.OPEN_REQUEST_SESSION_FAILED
# The remote shell's answers when the program does not exist (exit status 127).
_NOT_FOUND_MARKERS = ("not found", "No such file or directory")


class SshError(CommandError, OSError):
    """The SSH connection failed or could not be made; `transient` says whether trying again
    later may work (refused or lost connections) or not (refused key, wrong host key)."""


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    connect_timeout: float = 10.0

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def remote_command(argv: Sequence[str], environment: Mapping[str, str] | None = None) -> str:
    """The command line the remote shell runs for `argv`: every word quoted, so nothing in it
    is interpreted; environment variables set through `env`."""
    if not argv:
        raise ValueError("empty command")
    words = list(argv)
    if environment:
        for name in environment:
            if not name.isidentifier():
                raise ValueError(f"invalid environment variable name {name!r}")
        words = ["env", *(f"{k}={v}" for k, v in environment.items()), *words]
    return " ".join(shlex.quote(word) for word in words)


class SshSession:
    """An SSH connection to one account, opened lazily and re-opened after a loss."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._connect_lock = asyncio.Lock()
        # asyncssh logs every channel at INFO; the director's own events say what matters.
        logging.getLogger("asyncssh").setLevel(logging.WARNING)

    # ---- running operations -------------------------------------------------------------------

    def call(
        self,
        operation: Callable[[asyncssh.SSHClientConnection], Awaitable[T]],
        *,
        timeout: float,
        what: str,
    ) -> T:
        """Run `operation(connection)` on the session's loop; at most `timeout` seconds once
        connected. Connection problems raise `SshError`; anything else propagates."""
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._guarded(operation, timeout, what), loop)
        try:
            return future.result(timeout + self.target.connect_timeout + _CALL_SLACK)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise SshError(
                f"{what} on {self.target} timed out after {timeout:g} s", transient=True
            ) from exc

    def sftp_call(
        self,
        operation: Callable[[asyncssh.SFTPClient], Awaitable[T]],
        *,
        timeout: float,
        what: str,
    ) -> T:
        """Like `call`, with the connection's SFTP client (started once per connection)."""

        async def with_sftp(conn: asyncssh.SSHClientConnection) -> T:
            if self._sftp is None:
                try:
                    self._sftp = await conn.start_sftp_client()
                except asyncssh.ChannelOpenError as exc:
                    if exc.code != _SESSION_REQUEST_FAILED:
                        raise
                    # The server refused the subsystem: configuration, not bad luck.
                    raise SshError(
                        f"{self.target} refused the SFTP subsystem (is `Subsystem sftp` "
                        f"enabled in its sshd_config?): {exc.reason}",
                        transient=False,
                    ) from exc
            return await operation(self._sftp)

        return self.call(with_sftp, timeout=timeout, what=what)

    async def _guarded(
        self,
        operation: Callable[[asyncssh.SSHClientConnection], Awaitable[T]],
        limit: float,
        what: str,
    ) -> T:
        conn = await self._connection()
        try:
            async with asyncio.timeout(limit):
                return await operation(conn)
        except TimeoutError as exc:
            raise SshError(
                f"{what} on {self.target} timed out after {limit:g} s", transient=True
            ) from exc
        except (
            asyncssh.DisconnectError,
            asyncssh.ChannelOpenError,
            asyncssh.SFTPConnectionLost,
            asyncssh.SFTPNoConnection,
            ConnectionError,
        ) as exc:
            await self._drop()
            raise SshError(
                f"{what} on {self.target}: connection lost: {exc}", transient=True
            ) from exc

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._connect_lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            if self._conn is not None:
                log.info("ssh.connection_lost", target=str(self.target))
            self._conn, self._sftp = None, None
            self._conn = await self._connect()
            log.info("ssh.connected", target=str(self.target))
            return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        t = self.target
        key = _read_key(t.key_file)
        known_hosts = _read_known_hosts(t.known_hosts)
        try:
            return await asyncssh.connect(
                t.host,
                port=t.port,
                username=t.user,
                client_keys=[key],
                known_hosts=known_hosts,
                # Only what the queue configures: no ~/.ssh/config, agent or passwords.
                config=None,
                agent_path=None,
                password=None,
                preferred_auth="publickey",
                connect_timeout=t.connect_timeout,
                keepalive_interval=_KEEPALIVE_INTERVAL,
                keepalive_count_max=_KEEPALIVE_COUNT_MAX,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise SshError(
                f"host key for {t.host}:{t.port} does not match known_hosts {t.known_hosts} "
                f"(or the host is not listed there): {exc}",
                transient=False,
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise SshError(
                f"key authentication refused for {t.user}@{t.host}:{t.port} "
                f"(key {t.key_file}): {exc}",
                transient=False,
            ) from exc
        except TimeoutError as exc:
            raise SshError(
                f"cannot connect to {t}: no answer within {t.connect_timeout:g} s",
                transient=True,
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise SshError(f"cannot connect to {t}: {exc}", transient=True) from exc

    async def _drop(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"ssh {self.target}", daemon=True
                )
                # An asyncio lock belongs to one loop: a new loop needs a new lock.
                self._connect_lock = asyncio.Lock()
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self) -> None:
        """Close the connection and stop the loop; a later call opens both again."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop, self._thread = None, None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            conn, self._conn, self._sftp = self._conn, None, None
            if conn is not None:
                conn.close()
                await conn.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(_CLOSE_TIMEOUT)
        except (concurrent.futures.TimeoutError, asyncssh.Error, OSError) as exc:
            log.warning("ssh.close_failed", target=str(self.target), error=str(exc))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CLOSE_TIMEOUT)
        if not thread.is_alive():
            loop.close()


def _read_key(path: Path) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(str(path))
    except (OSError, asyncssh.KeyImportError) as exc:
        raise SshError(f"cannot read the private key {path}: {exc}", transient=False) from exc


def _read_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    try:
        return asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError) as exc:
        raise SshError(f"cannot read known_hosts {path}: {exc}", transient=False) from exc


# ---- CommandRunner ---------------------------------------------------------------------------


class SshRunner:
    """Runs commands on the remote host (the `CommandRunner` of sitedirectors/remote.py)."""

    def __init__(self, session: SshSession) -> None:
        self.session = session

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        stdin: bytes | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> CommandResult:
        command = remote_command(argv, environment)

        async def run(conn: asyncssh.SSHClientConnection) -> asyncssh.SSHCompletedProcess:
            return await conn.run(command, input=stdin or b"", encoding=None, check=False)

        done = self.session.call(run, timeout=timeout, what=f"{argv[0]}")
        stdout = _text(done.stdout)
        stderr = _text(done.stderr)
        # Killed by a signal: no exit status, asyncssh gives -signal (or None).
        returncode = done.returncode if done.returncode is not None else -1
        if returncode == 127 and any(m in stderr for m in _NOT_FOUND_MARKERS):
            raise CommandError(
                f"{argv[0]}: command not found on {self.session.target.host}", transient=False
            )
        return CommandResult(tuple(argv), returncode, stdout, stderr)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


# ---- RemoteFiles -----------------------------------------------------------------------------


def _os_error(exc: asyncssh.SFTPError, path: str) -> OSError:
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        return FileNotFoundError(errno.ENOENT, f"{exc.reason} (remote)", path)
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return PermissionError(errno.EACCES, f"{exc.reason} (remote)", path)
    if isinstance(exc, asyncssh.SFTPFileAlreadyExists):
        return FileExistsError(errno.EEXIST, f"{exc.reason} (remote)", path)
    return OSError(errno.EIO, f"{exc.reason} (remote)", path)


class SftpFiles:
    """Files on the remote host over SFTP (the `RemoteFiles` of sitedirectors/remote.py).
    Relative paths are relative to the account's home directory."""

    def __init__(self, session: SshSession, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> None:
        self.session = session
        self.timeout = timeout

    def _call(
        self,
        what: str,
        path: str,
        operation: Callable[[asyncssh.SFTPClient], Awaitable[T]],
        timeout: float | None = None,
    ) -> T:
        try:
            return self.session.sftp_call(
                operation, timeout=timeout or self.timeout, what=f"sftp {what} {path}"
            )
        except asyncssh.SFTPError as exc:
            if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
                raise SshError(f"sftp {what} {path}: {exc.reason}", transient=True) from exc
            raise _os_error(exc, path) from exc

    def home(self) -> str:
        """The account's home directory (where relative paths start)."""

        async def op(sftp: asyncssh.SFTPClient) -> str:
            return str(await sftp.realpath("."))

        return self._call("realpath", ".", op)

    def absolute(self, path: str) -> str:
        """`path` as an absolute path (relative ones start at the home directory)."""
        if not posixpath.isabs(path):
            path = posixpath.join(self.home(), path)
        return posixpath.normpath(path)

    def make_dirs(self, path: str, mode: int = 0o700) -> None:
        async def op(sftp: asyncssh.SFTPClient) -> None:
            await sftp.makedirs(path, attrs=asyncssh.SFTPAttrs(permissions=mode), exist_ok=True)

        self._call("mkdir", path, op)

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        async def op(sftp: asyncssh.SFTPClient) -> None:
            async def write(handle: asyncssh.SFTPClientFile) -> None:
                await handle.write(data)

            await _write_atomic(sftp, path, mode, write)

        self._call("write", path, op)

    def put_file(self, local: Path, path: str, mode: int = 0o644) -> None:
        size = local.stat().st_size

        async def op(sftp: asyncssh.SFTPClient) -> None:
            async def copy(handle: asyncssh.SFTPClientFile) -> None:
                with local.open("rb") as source:
                    while chunk := source.read(_COPY_CHUNK):
                        await handle.write(chunk)

            await _write_atomic(sftp, path, mode, copy)

        self._call("put", path, op, timeout=self.timeout + size * _SECONDS_PER_BYTE)

    def exists(self, path: str) -> bool:
        async def op(sftp: asyncssh.SFTPClient) -> bool:
            return await sftp.lexists(path)

        return self._call("lstat", path, op)

    def size(self, path: str) -> int | None:
        async def op(sftp: asyncssh.SFTPClient) -> int | None:
            try:
                attrs = await sftp.stat(path)
            except asyncssh.SFTPNoSuchFile:
                return None
            return attrs.size

        return self._call("stat", path, op)

    def tail(self, path: str, max_bytes: int) -> str:
        async def op(sftp: asyncssh.SFTPClient) -> str:
            try:
                handle = await sftp.open(path, "rb")
            except asyncssh.SFTPNoSuchFile:
                return ""
            async with handle:
                size = (await handle.stat()).size or 0
                await handle.seek(max(0, size - max_bytes))
                data = await handle.read(max_bytes)
            return tail_text(data if isinstance(data, bytes) else data.encode(), size)

        return self._call("read", path, op)

    def remove_tree(self, path: str) -> None:
        async def op(sftp: asyncssh.SFTPClient) -> None:
            try:
                attrs = await sftp.lstat(path)
            except asyncssh.SFTPNoSuchFile:
                return
            if attrs.permissions is not None and stat.S_ISDIR(attrs.permissions):
                await sftp.rmtree(path)
            else:
                await sftp.remove(path)

        self._call("remove", path, op)


async def _write_atomic(
    sftp: asyncssh.SFTPClient,
    path: str,
    mode: int,
    fill: Callable[[asyncssh.SFTPClientFile], Awaitable[None]],
) -> None:
    """Create a temporary file next to `path` with `mode` (set explicitly too: the server's
    umask applies at creation), fill it, rename it over `path`."""
    directory, name = posixpath.split(path)
    tmp = posixpath.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        handle = await sftp.open(tmp, "xb", attrs=asyncssh.SFTPAttrs(permissions=mode))
        async with handle:
            await handle.chmod(mode)
            await fill(handle)
        try:
            await sftp.posix_rename(tmp, path)
        except asyncssh.SFTPOpUnsupported:
            # Servers without the OpenSSH extension: plain rename refuses to replace.
            if await sftp.lexists(path):
                await sftp.remove(path)
            await sftp.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(asyncssh.Error, OSError):
            await sftp.remove(tmp)
        raise
