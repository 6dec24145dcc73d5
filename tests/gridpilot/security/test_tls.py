"""TLS with real handshakes: a grpc.aio server on 127.0.0.1 serving the standard health service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gridpilot.security.tls import ClientTls, ServerTls, peer_common_name
from tests.gridpilot.security.conftest import Pki, make_pki

SERVING = health_pb2.HealthCheckResponse.SERVING


class _RecordingHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Answers SERVING and remembers who called (the mTLS identity)."""

    def __init__(self) -> None:
        self.callers: list[str | None] = []

    async def Check(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> health_pb2.HealthCheckResponse:
        self.callers.append(peer_common_name(context))
        return health_pb2.HealthCheckResponse(status=SERVING)


@asynccontextmanager
async def _serving(tls: ServerTls) -> AsyncIterator[tuple[int, _RecordingHealth]]:
    server = grpc.aio.server()
    servicer = _RecordingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", tls.credentials())
    await server.start()
    try:
        yield port, servicer
    finally:
        await server.stop(None)


async def _check(target: str, tls: ClientTls) -> grpc.StatusCode:
    async with grpc.aio.secure_channel(target, tls.credentials()) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    assert response.status == SERVING
    return grpc.StatusCode.OK


def _server_only(pki: Pki) -> ServerTls:
    return ServerTls(cert=pki.server_cert, key=pki.server_key)


def test_handshake_with_the_right_ca(pki: Pki) -> None:
    async def main() -> None:
        async with _serving(_server_only(pki)) as (port, servicer):
            assert await _check(f"localhost:{port}", ClientTls(ca=pki.ca)) == grpc.StatusCode.OK
            assert await _check(f"127.0.0.1:{port}", ClientTls(ca=pki.ca)) == grpc.StatusCode.OK
            # No client certificate was asked for, so there is no certificate identity.
            assert servicer.callers == [None, None]

    asyncio.run(main())


def test_client_trusting_another_ca_fails(pki: Pki, other_pki: Pki) -> None:
    async def main() -> None:
        async with _serving(_server_only(pki)) as (port, servicer):
            code = await _check(f"localhost:{port}", ClientTls(ca=other_pki.ca))
            assert code == grpc.StatusCode.UNAVAILABLE
            assert servicer.callers == []

    asyncio.run(main())


def test_hostname_mismatch_fails(tmp_path: Path) -> None:
    elsewhere = make_pki(tmp_path, ["central.example.org"])

    async def main() -> None:
        async with _serving(_server_only(elsewhere)) as (port, _servicer):
            code = await _check(f"localhost:{port}", ClientTls(ca=elsewhere.ca))
            assert code == grpc.StatusCode.UNAVAILABLE

    asyncio.run(main())


def test_mutual_tls_shows_the_client_common_name(pki: Pki, other_pki: Pki) -> None:
    server_tls = ServerTls(
        cert=pki.server_cert, key=pki.server_key, ca=pki.ca, require_client_cert=True
    )
    with_cert = ClientTls(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
    foreign_cert = ClientTls(ca=pki.ca, cert=other_pki.client_cert, key=other_pki.client_key)

    async def main() -> None:
        async with _serving(server_tls) as (port, servicer):
            target = f"localhost:{port}"
            assert await _check(target, with_cert) == grpc.StatusCode.OK
            assert servicer.callers == ["director-kek"]
            # Required means required; and a certificate from another CA is not accepted.
            assert await _check(target, ClientTls(ca=pki.ca)) == grpc.StatusCode.UNAVAILABLE
            assert await _check(target, foreign_cert) == grpc.StatusCode.UNAVAILABLE
            assert servicer.callers == ["director-kek"]

    asyncio.run(main())


def test_configuration_errors_are_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="optional client certificate"):
        ServerTls(cert=pki.server_cert, key=pki.server_key, ca=pki.ca)
    with pytest.raises(ValueError, match="needs the CA"):
        ServerTls(cert=pki.server_cert, key=pki.server_key, require_client_cert=True)
    with pytest.raises(ValueError, match="needs its key"):
        ClientTls(ca=pki.ca, cert=pki.client_cert)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClientTls(ca=pki.ca_dir / "nope.pem").credentials()
