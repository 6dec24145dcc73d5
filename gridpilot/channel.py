"""Client channels to central: TLS, a bearer token on every call, the same options everywhere.

    security = ClientSecurity(tls=ClientTls(ca=Path("ca.pem")), token=StaticToken(token))
    channel = open_channel("central.example:50051", security)      # grpc.aio
    channel = open_sync_channel("central.example:50051", security) # blocking

The token is read from its source on every call (a client interceptor adds
`authorization: Bearer <token>`), so a pilot can switch from its registration token to its
session token on the same channel. Plaintext needs `ClientSecurity.insecure(...)` and logs a
warning each time such a channel is opened.

Token files (a user's login token, a director's service token, a pilot's registration token,
a job token) are secrets: `write_token_file` creates them 0600 atomically and
`read_token_file` refuses one that other users could read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import grpc

from gridpilot.logs import get_logger
from gridpilot.security.files import PRIVATE_MODE, write_file_atomic
from gridpilot.security.tls import ClientTls

log = get_logger(__name__)

# Sandboxes stream in chunks, so no message needs to be large; the cap protects both ends.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Keep the pilot's session stream alive through idle NAT/firewall timeouts.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect within seconds after central restarts: gRPC's default back-off grows to
    # 120 s between connection attempts, so a channel that saw a short outage could stay
    # down for minutes after central is back. The minimum connect timeout
    # ("grpc.min_reconnect_backoff_ms", 20 s by default) is left alone: it bounds how long
    # one attempt may take, and a TLS handshake over a WAN needs that room.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 10_000),
]

AUTHORIZATION_KEY = "authorization"
INSECURE_WARNING = "connecting to central WITHOUT TLS"


class TokenFileError(Exception):
    """A token file is missing, unreadable, empty or readable by other users."""


# ---- token sources -----------------------------------------------------------------------------


class TokenSource(Protocol):
    """Anything whose current token can be read; "" means: send no token."""

    def token(self) -> str: ...


@dataclass(frozen=True)
class StaticToken:
    value: str

    def token(self) -> str:
        return self.value


class MutableToken:
    """A token that can be replaced while channels use it (pilot: registration → session)."""

    def __init__(self, value: str = "") -> None:
        self._value = value

    def token(self) -> str:
        return self._value

    def set(self, value: str) -> None:
        self._value = value


class FileToken:
    """A token file read again whenever it changes, so an operator can replace a long-running
    service's token (a site director's) without restarting it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""
        self.token()  # fail at start, not at the first call

    def token(self) -> str:
        try:
            st = self.path.stat()
        except OSError:
            if self._value:
                # Mid-replacement or briefly gone: keep using the token we have.
                return self._value
            return read_token_file(self.path)  # raises, saying why
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._value = read_token_file(self.path)
            self._stamp = stamp
        return self._value


# ---- token files -------------------------------------------------------------------------------


def read_token_file(path: Path) -> str:
    """The token in `path`; TokenFileError if it is missing, empty or not private."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise TokenFileError(f"token file {path} does not exist") from exc
    except OSError as exc:
        raise TokenFileError(f"cannot read token file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        # Checked on the open file, so a swap between check and read cannot slip through.
        if not stat.S_ISREG(st.st_mode):
            raise TokenFileError(f"token file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise TokenFileError(
                f"token file {path} is readable by other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): refusing to use it; "
                f"run 'chmod 600 {path}' or get a new token"
            )
        if st.st_uid != os.getuid():
            raise TokenFileError(f"token file {path} belongs to another user (uid {st.st_uid})")
        data = handle.read(65536)
    token = data.decode("ascii", errors="replace").strip()
    if not token:
        raise TokenFileError(f"token file {path} is empty")
    return token


def write_token_file(path: Path, token: str) -> None:
    """Store a token with mode 0600, atomically (a reader sees the old or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_file_atomic(path, token.encode("ascii") + b"\n", PRIVATE_MODE)


def consume_token_file(path: Path) -> str:
    """Read a single-use token and remove the file, so nothing can use it a second time."""
    token = read_token_file(path)
    try:
        path.unlink()
    except OSError:
        # Cannot delete (read-only directory): at least leave no usable token behind.
        try:
            path.write_bytes(b"")
        except OSError as exc:
            log.warning("token.file_not_removed", path=str(path), error=str(exc))
    return token


# ---- security of a channel ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSecurity:
    """How a client talks to central: TLS (None only when insecure) and its token source
    (None: no authorization header, e.g. a login with a client certificate)."""

    tls: ClientTls | None
    token: TokenSource | None = None

    @classmethod
    def insecure(cls, token: TokenSource | None = None) -> ClientSecurity:
        return cls(tls=None, token=token)

    @classmethod
    def from_options(
        cls,
        *,
        ca: Path | None,
        insecure: bool,
        token: TokenSource | None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> ClientSecurity:
        """From command-line style options; ValueError when TLS is wanted but no CA given."""
        if insecure:
            return cls.insecure(token)
        if ca is None:
            raise ValueError("no CA certificate to verify central with: give --ca FILE")
        return cls(tls=ClientTls(ca=ca, cert=cert, key=key), token=token)

    def current_token(self) -> str:
        return self.token.token() if self.token is not None else ""


def _with_token(metadata: Any, token: str) -> list[tuple[str, Any]]:
    pairs = [(k, v) for k, v in (metadata or ()) if k != AUTHORIZATION_KEY]
    if token:
        pairs.append((AUTHORIZATION_KEY, f"Bearer {token}"))
    return pairs


class _AioBearerBase:
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=grpc.aio.Metadata(*_with_token(details.metadata, self._source.token())),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


# grpc.aio files each interceptor under the FIRST kind it is an instance of, so every kind of
# call needs its own interceptor object.
class _AioUnaryUnary(_AioBearerBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _AioUnaryStream(_AioBearerBase, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _AioStreamUnary(_AioBearerBase, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Any,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _AioStreamStream(_AioBearerBase, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Any,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def _aio_interceptors(source: TokenSource | None) -> list[grpc.aio.ClientInterceptor] | None:
    if source is None:
        return None
    kinds = (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)
    return [kind(source) for kind in kinds]


class _SyncDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _SyncBearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _SyncDetails(  # type: ignore[return-value]  # grpc's ABC, duck-typed by grpc
            method=details.method,
            timeout=details.timeout,
            metadata=_with_token(details.metadata, self._source.token()),
            credentials=details.credentials,
            wait_for_ready=getattr(details, "wait_for_ready", None),
            compression=getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: Any,
        request_iterator: Iterator[Any],
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: Any,
        request_iterator: Iterator[Any],
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


def _options(extra: list[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    # gRPC takes the first value of a repeated option: the caller's go first.
    return [*(extra or []), *CHANNEL_OPTIONS]


def open_channel(
    target: str, security: ClientSecurity, *, options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """An asyncio channel to central at host:port with TLS and the caller's token."""
    interceptors = _aio_interceptors(security.token)
    if security.tls is None:
        log.warning("channel.insecure", target=target, warning=INSECURE_WARNING)
        return grpc.aio.insecure_channel(
            target, options=_options(options), interceptors=interceptors
        )
    return grpc.aio.secure_channel(
        target, security.tls.credentials(), options=_options(options), interceptors=interceptors
    )


def open_sync_channel(
    target: str, security: ClientSecurity, *, options: list[tuple[str, Any]] | None = None
) -> grpc.Channel:
    """A blocking channel (CLI commands, the wrapper, site directors)."""
    if security.tls is None:
        log.warning("channel.insecure", target=target, warning=INSECURE_WARNING)
        channel = grpc.insecure_channel(target, options=_options(options))
    else:
        channel = grpc.secure_channel(target, security.tls.credentials(), options=_options(options))
    if security.token is None:
        return channel
    return grpc.intercept_channel(channel, _SyncBearer(security.token))
