"""Client channels to central, with the same options on every side (CLI, pilot, wrapper...)."""

from __future__ import annotations

import grpc

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


def open_channel(target: str) -> grpc.aio.Channel:
    """An asyncio channel to central at host:port (TLS arrives with the security issue)."""
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


def open_sync_channel(target: str) -> grpc.Channel:
    """A blocking channel, for short-lived CLI commands."""
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
