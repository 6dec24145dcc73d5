"""The one server interceptor: token in, caller out; domain errors out as gRPC status codes.

Every call but the probes (health, reflection) carries `authorization: Bearer <token>`. The
token is verified (signature, issuer, audience, times, revocation; see central.auth) and the
caller's role checked against the policy table (central/rpc/policy.py) before the servicer
runs; the `Caller` is then in `central.logic.identity.current_caller` for the call. Refusals:
UNAUTHENTICATED when the token is missing or not valid (the message names the reason),
PERMISSION_DENIED when a valid token's role may not call the method or its user is banned.
Every handler kind (unary and streaming) is wrapped, so servicers raise domain errors and
never touch status codes themselves.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from central.logic.errors import (
    FailedPreconditionError,
    GridpilotError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from central.logic.identity import Caller, current_caller
from central.rpc.policy import Access, access_of, short_name
from gridpilot.logs import get_logger
from gridpilot.security.claims import Role, TokenError

if TYPE_CHECKING:
    from central.auth.runtime import Security

log = get_logger(__name__)

AUTHORIZATION_KEY = "authorization"
_BEARER = "bearer "

STATUS_OF: dict[type[GridpilotError], grpc.StatusCode] = {
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
}


def status_of(exc: GridpilotError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = STATUS_OF.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


@dataclass(frozen=True, slots=True)
class Refusal:
    code: grpc.StatusCode
    message: str


# What a call runs as: a caller, nobody (self-authenticating methods without a token), or
# a refusal to send before the servicer runs.
Outcome = Caller | Refusal | None

NO_TOKEN = (
    "no token: calls to central need 'authorization: Bearer <token>' metadata "
    "(users get one with gb2_proxy_init)"
)


def bearer_token(metadata: Any) -> str | Refusal | None:
    """The bearer token of the call, None without one, or a refusal for bad metadata."""
    values = [
        value if isinstance(value, str) else value.decode(errors="replace")
        for key, value in metadata or ()
        if key == AUTHORIZATION_KEY
    ]
    if not values:
        return None
    if len(values) > 1:
        return Refusal(grpc.StatusCode.UNAUTHENTICATED, "several authorization headers")
    value = values[0]
    if value[: len(_BEARER)].lower() != _BEARER or not value[len(_BEARER) :].strip():
        return Refusal(
            grpc.StatusCode.UNAUTHENTICATED,
            "malformed authorization metadata: expected 'Bearer <token>'",
        )
    return value[len(_BEARER) :].strip()


def authorize(security: Security, method: str, metadata: Any) -> Outcome:
    """Authenticate the call's token and check the policy table for `method`."""
    return _authorize(security, method, access_of(method), metadata)


def _authorize(
    security: Security, method: str, access: frozenset[Role] | Access | None, metadata: Any
) -> Outcome:
    token = bearer_token(metadata)
    if isinstance(token, Refusal):
        return token
    if token is None:
        if access is Access.SELF_AUTHENTICATING:
            return None
        return Refusal(grpc.StatusCode.UNAUTHENTICATED, NO_TOKEN)
    try:
        caller = security.authenticate(token)
    except TokenError as exc:
        log.info("rpc.unauthenticated", method=method, reason=exc.reason.value)
        return Refusal(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    if caller.is_person and security.bans.user_banned(caller.subject):
        return Refusal(grpc.StatusCode.PERMISSION_DENIED, f"user {caller.subject} is banned")
    if access is Access.SELF_AUTHENTICATING:
        return caller
    if not isinstance(access, frozenset) or caller.role not in access:
        return Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"role {caller.role.value} may not call {short_name(method)}",
        )
    return caller


Context = grpc.aio.ServicerContext[Any, Any]


async def _fail(context: Context, method: str, exc: Exception) -> None:
    if isinstance(exc, GridpilotError):
        code = status_of(exc)
        log.debug("rpc.refused", method=method, code=code.name, error=exc.message)
        await context.abort(code, exc.message)
    log.exception("rpc.failed", method=method, error=type(exc).__name__)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in central: {exc}")


def _unary_response(behavior: Callable[..., Any], method: str, caller: Outcome) -> Any:
    async def wrapped(request: Any, context: Context) -> Any:
        if isinstance(caller, Refusal):
            await context.abort(caller.code, caller.message)
        # Each RPC runs in its own task (own context copy), so the value dies with the call.
        current_caller.set(caller)
        try:
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(context, method, exc)

    return wrapped


def _stream_response(behavior: Callable[..., Any], method: str, caller: Outcome) -> Any:
    async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(caller, Refusal):
            await context.abort(caller.code, caller.message)
        # Each RPC runs in its own task (own context copy), so the value dies with the call.
        current_caller.set(caller)
        try:
            result = behavior(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                await result
            else:
                for item in result:
                    yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(context, method, exc)

    return wrapped


class CentralInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, security: Security) -> None:
        self._security = security

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        access = access_of(method)
        if access is Access.PUBLIC:
            return handler
        caller = _authorize(
            self._security, method, access, handler_call_details.invocation_metadata
        )
        codec: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary_response(handler.unary_unary, method, caller), **codec
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _unary_response(handler.stream_unary, method, caller), **codec
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _stream_response(handler.unary_stream, method, caller), **codec
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _stream_response(handler.stream_stream, method, caller), **codec
            )
        return handler
