"""A default bearer token for test channels: added to calls that carry no authorization.

gridpilot.channel's interceptor always sends its token source's token (as clients should);
tests also need to make one call as someone else on the same channel, so this one adds the
default only when the call's metadata has no `authorization` of its own.
"""

from __future__ import annotations

from typing import Any

import grpc

from gridpilot.channel import AUTHORIZATION_KEY, CHANNEL_OPTIONS, ClientSecurity

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    """Call metadata carrying `token`."""
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


class _Default:
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        pairs = list(details.metadata or ())
        if not any(key == AUTHORIZATION_KEY for key, _ in pairs):
            pairs.append((AUTHORIZATION_KEY, f"Bearer {self._token}"))
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=grpc.aio.Metadata(*pairs),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


# grpc.aio files each interceptor under the first call kind it implements: one per kind.
class _UnaryUnary(_Default, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(_Default, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnary(_Default, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStream(_Default, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def channel_with_default_token(
    target: str, security: ClientSecurity, default_token: str
) -> grpc.aio.Channel:
    """An aio channel (TLS per `security`) whose calls without metadata carry the default."""
    interceptors: list[grpc.aio.ClientInterceptor] = [
        kind(default_token) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
    ]
    if security.tls is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.secure_channel(
        target, security.tls.credentials(), options=CHANNEL_OPTIONS, interceptors=interceptors
    )
