"""The machine's ceiling: a gRPC server that answers at once (the standard health service),
served with the same TLS certificate as central, in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.connection
from pathlib import Path

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gridpilot.bench.central_proc import MAX_MESSAGE_BYTES


async def _serve(
    cert_pem: bytes, key_pem: bytes, conn: multiprocessing.connection.Connection
) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    servicer = health.aio.HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    conn.send(port)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes its end of the pipe (or says anything).
    with contextlib.suppress(EOFError):
        await loop.run_in_executor(None, conn.recv_bytes)
    await server.stop(0.5)


def echo_main(cert: str, key: str, conn: multiprocessing.connection.Connection) -> None:
    uvloop.run(_serve(Path(cert).read_bytes(), Path(key).read_bytes(), conn))
