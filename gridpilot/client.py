"""A blocking connection to central for the CLI: stubs with the caller's token, a deadline
on every call, and gRPC errors turned into one readable ClientError. Settings and the token:
gridpilot/client_settings.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from gridpilot.channel import open_sync_channel
from gridpilot.client_errors import CentralRequestError, CentralUnreachableError, ClientError
from gridpilot.client_settings import ENV_CA, LOGIN_HINT, ClientSettings
from gridpilot.v1 import (
    admin_pb2_grpc,
    auth_pb2_grpc,
    data_pb2_grpc,
    jobs_pb2_grpc,
    sandboxes_pb2_grpc,
    sitedirectors_pb2_grpc,
)

T = TypeVar("T")


def _tls_failure(details: str) -> bool:
    lowered = details.lower()
    return any(word in lowered for word in ("handshake", "certificate", "ssl", "tls"))


def translate_rpc_error(exc: grpc.RpcError, target: str) -> ClientError:
    """One readable error for a failed call; the caller raises it `from exc`."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    if code is grpc.StatusCode.UNAVAILABLE:
        if _tls_failure(details):
            return CentralUnreachableError(
                f"TLS handshake with central at {target} failed (is {ENV_CA} the CA that "
                f"signed central's certificate?): {details}"
            )
        return CentralUnreachableError(f"cannot reach central at {target}: {details}")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CentralUnreachableError(f"central at {target} did not answer in time: {details}")
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return CentralRequestError(f"not authenticated: {details} ({LOGIN_HINT})", code)
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return CentralRequestError(f"permission denied: {details}", code)
    if code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ):
        return CentralRequestError(details, code)
    return CentralRequestError(f"central error ({code.name}): {details}", code)


@dataclass
class CentralClient:
    """Blocking stubs to central with the caller's token and a deadline on every call.

    Use as a context manager; `call(stub.Method, request)` turns gRPC errors into ClientError.
    """

    settings: ClientSettings
    _channel: grpc.Channel | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> CentralClient:
        self._channel = open_sync_channel(self.settings.central, self.settings.security())
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

    @property
    def auth(self) -> auth_pb2_grpc.AuthServiceStub:
        return auth_pb2_grpc.AuthServiceStub(self.channel)

    @property
    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel)

    def call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        """A unary (or stream-request) call with a deadline."""
        try:
            return method(request, timeout=timeout or self.settings.timeout)
        except grpc.RpcError as exc:
            raise translate_rpc_error(exc, self.settings.central) from exc

    def stream(
        self, method: Callable[..., Iterator[T]], request: Any, timeout: float | None = None
    ) -> Iterator[T]:
        """A server-streaming call; errors while iterating become ClientError too."""
        try:
            yield from method(request, timeout=timeout or self.settings.timeout)
        except grpc.RpcError as exc:
            raise translate_rpc_error(exc, self.settings.central) from exc
