"""TLS credentials for gRPC servers and channels, and the mTLS identity of a caller."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

# The auth-context property gRPC fills from a verified client certificate's subject.
_CN_PROPERTY = "x509_common_name"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"TLS {what} file {path} does not exist") from exc


@dataclass(frozen=True)
class ServerTls:
    """A server certificate and key, and optionally mutual TLS.

    grpcio (Python) offers only two client-certificate modes: not requested at all, or
    requested, required and verified. An optional client certificate cannot be asked for, so
    mutual TLS is explicit: `ca` + `require_client_cert=True` makes this port accept only
    clients with a certificate signed by `ca` (their CN is `peer_common_name`). Token-only
    clients (users, pilots, jobs) need a port without `ca`; a central that wants both serves
    two ports. A `ca` without `require_client_cert` is refused rather than silently unused.
    """

    cert: Path
    key: Path
    ca: Path | None = None
    require_client_cert: bool = False

    def __post_init__(self) -> None:
        if self.require_client_cert and self.ca is None:
            raise ValueError("require_client_cert needs the CA that signs client certificates")
        if self.ca is not None and not self.require_client_cert:
            raise ValueError(
                "grpcio cannot request an optional client certificate: set "
                "require_client_cert=True for mutual TLS on this port, or leave ca unset"
            )

    def credentials(self) -> grpc.ServerCredentials:
        root = _read(self.ca, "CA certificate") if self.ca is not None else None
        return grpc.ssl_server_credentials(
            [(_read(self.key, "server key"), _read(self.cert, "server certificate"))],
            root_certificates=root,
            require_client_auth=self.require_client_cert,
        )


@dataclass(frozen=True)
class ClientTls:
    """The CA that signed the server's certificate; optionally a client certificate + key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key and a key its certificate")

    def credentials(self) -> grpc.ChannelCredentials:
        root = _read(self.ca, "CA certificate")
        if self.cert is None or self.key is None:
            return grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=_read(self.key, "client key"),
            certificate_chain=_read(self.cert, "client certificate"),
        )


def peer_common_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The CN of the caller's verified client certificate; None when it presented none."""
    values = list(context.auth_context().get(_CN_PROPERTY, ()))
    if not values:
        return None
    first: bytes = values[0]
    return first.decode()
