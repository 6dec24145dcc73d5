"""Client-side settings and a blocking connection to central, for the CLI commands.

Where central is: `--central HOST:PORT`, else the environment variable GRIDPILOT_CENTRAL, else
the key `central` in `~/.config/gridpilot/client.toml` (`$XDG_CONFIG_HOME` is honoured).

Who the caller is travels as gRPC metadata: `x-gridpilot-user` (GRIDPILOT_USER, else the login
name) and `x-gridpilot-group` (GRIDPILOT_GROUP, default "belle_user"). Signed tokens replace this
with the security issue; keeping it in one place here makes that a one-module change.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from gridpilot.channel import open_sync_channel
from gridpilot.v1 import (
    data_pb2_grpc,
    jobs_pb2_grpc,
    sandboxes_pb2_grpc,
    sitedirectors_pb2_grpc,
)

ENV_CENTRAL = "GRIDPILOT_CENTRAL"
ENV_USER = "GRIDPILOT_USER"
ENV_GROUP = "GRIDPILOT_GROUP"
ENV_TIMEOUT = "GRIDPILOT_RPC_TIMEOUT"
DEFAULT_GROUP = "belle_user"
USER_METADATA_KEY = "x-gridpilot-user"
GROUP_METADATA_KEY = "x-gridpilot-group"
# Interactive commands should fail fast rather than hang on a dead central.
DEFAULT_TIMEOUT = 20.0

T = TypeVar("T")


class ClientError(Exception):
    """A client-side problem worth one clear line to the user (bad setting, central error)."""


class CentralUnreachableError(ClientError):
    """Central could not be reached (connection refused, DNS, deadline before any answer)."""


class CentralRequestError(ClientError):
    """Central answered with an error status; `code` is the gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gridpilot" / "client.toml"


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(f"cannot read client config {path}: {exc}") from exc


def _check_target(target: str, origin: str) -> str:
    target = target.strip()
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClientError(f"central address {target!r} from {origin} is not HOST:PORT")
    return target


def resolve_central(cli_value: str | None = None) -> str:
    """The central address, by precedence: option, environment, client config file."""
    if cli_value:
        return _check_target(cli_value, "--central")
    env_value = os.environ.get(ENV_CENTRAL, "").strip()
    if env_value:
        return _check_target(env_value, ENV_CENTRAL)
    path = config_path()
    value = _read_config_file(path).get("central")
    if isinstance(value, str) and value.strip():
        return _check_target(value, str(path))
    if value is not None:
        raise ClientError(f"key 'central' in {path} must be a HOST:PORT string")
    raise ClientError(
        f"no central address: use --central HOST:PORT, set {ENV_CENTRAL}, "
        f'or put central = "HOST:PORT" in {path}'
    )


def resolve_user() -> str:
    user = os.environ.get(ENV_USER, "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError) as exc:
        raise ClientError(f"cannot tell who you are: set {ENV_USER}") from exc


def resolve_group() -> str:
    return os.environ.get(ENV_GROUP, "").strip() or DEFAULT_GROUP


def resolve_timeout() -> float:
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError as exc:
        raise ClientError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds") from exc
    if value <= 0:
        raise ClientError(f"{ENV_TIMEOUT} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class ClientSettings:
    central: str
    user: str
    group: str
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def resolve(cls, central: str | None = None) -> ClientSettings:
        return cls(
            central=resolve_central(central),
            user=resolve_user(),
            group=resolve_group(),
            timeout=resolve_timeout(),
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((USER_METADATA_KEY, self.user), (GROUP_METADATA_KEY, self.group))


def translate_rpc_error(exc: grpc.RpcError, target: str) -> ClientError:
    """One readable error for a failed call; the caller raises it `from exc`."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    if code is grpc.StatusCode.UNAVAILABLE:
        return CentralUnreachableError(f"cannot reach central at {target}: {details}")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CentralUnreachableError(f"central at {target} did not answer in time: {details}")
    if code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ):
        return CentralRequestError(details, code)
    return CentralRequestError(f"central error ({code.name}): {details}", code)


@dataclass
class CentralClient:
    """Blocking stubs to central with identity metadata and a deadline on every call.

    Use as a context manager; `call(stub.Method, request)` turns gRPC errors into ClientError.
    """

    settings: ClientSettings
    _channel: grpc.Channel | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> CentralClient:
        self._channel = open_sync_channel(self.settings.central)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            raise RuntimeError("CentralClient used outside its context")
        return self._channel

    @property
    def jobs(self) -> jobs_pb2_grpc.JobServiceStub:
        return jobs_pb2_grpc.JobServiceStub(self.channel)

    @property
    def data(self) -> data_pb2_grpc.DataServiceStub:
        return data_pb2_grpc.DataServiceStub(self.channel)

    @property
    def sandboxes(self) -> sandboxes_pb2_grpc.SandboxServiceStub:
        return sandboxes_pb2_grpc.SandboxServiceStub(self.channel)

    @property
    def site_directors(self) -> sitedirectors_pb2_grpc.SiteDirectorServiceStub:
        return sitedirectors_pb2_grpc.SiteDirectorServiceStub(self.channel)

    def call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        """A unary (or stream-request) call with deadline and identity."""
        try:
            return method(
                request,
                timeout=timeout or self.settings.timeout,
                metadata=self.settings.metadata(),
            )
        except grpc.RpcError as exc:
            raise translate_rpc_error(exc, self.settings.central) from exc

    def stream(
        self, method: Callable[..., Iterator[T]], request: Any, timeout: float | None = None
    ) -> Iterator[T]:
        """A server-streaming call; errors while iterating become ClientError too."""
        try:
            responses = method(
                request,
                timeout=timeout or self.settings.timeout,
                metadata=self.settings.metadata(),
            )
            yield from responses
        except grpc.RpcError as exc:
            raise translate_rpc_error(exc, self.settings.central) from exc
