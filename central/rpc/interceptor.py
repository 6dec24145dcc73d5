"""The one server interceptor: caller identity in, domain errors out as gRPC status codes.

Identity comes from the `x-gridpilot-user` / `x-gridpilot-group` metadata for now and is put in
`central.logic.identity.current_caller` for the call; the security issue swaps this for signed
tokens at the same place. Every handler kind (unary and streaming) is wrapped, so servicers
raise domain errors and never touch status codes themselves.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from central.logic.errors import (
    FailedPreconditionError,
    GridpilotError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
)
from central.logic.identity import DEFAULT_GROUP, DEFAULT_USER, Caller, current_caller
from gridpilot.logs import get_logger

log = get_logger(__name__)

USER_KEY = "x-gridpilot-user"
GROUP_KEY = "x-gridpilot-group"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

STATUS_OF: dict[type[GridpilotError], grpc.StatusCode] = {
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_of(exc: GridpilotError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = STATUS_OF.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def caller_from_metadata(metadata: Any) -> Caller | str:
    """The caller, or a message saying what is wrong with the identity metadata."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (USER_KEY, GROUP_KEY):
            values[key] = value if isinstance(value, str) else value.decode(errors="replace")
    user = values.get(USER_KEY, DEFAULT_USER)
    group = values.get(GROUP_KEY, DEFAULT_GROUP)
    for key, value in ((USER_KEY, user), (GROUP_KEY, group)):
        if not _NAME_RE.match(value):
            return f"invalid {key} {value!r}: 1-64 letters, digits, '_', '.' or '-'"
    return Caller(user, group)


Context = grpc.aio.ServicerContext[Any, Any]


async def _fail(context: Context, method: str, exc: Exception) -> None:
    if isinstance(exc, GridpilotError):
        code = status_of(exc)
        log.debug("rpc.refused", method=method, code=code.name, error=exc.message)
        await context.abort(code, exc.message)
    log.exception("rpc.failed", method=method, error=type(exc).__name__)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in central: {exc}")


def _unary_response(behavior: Callable[..., Any], method: str, caller: Caller | str) -> Any:
    async def wrapped(request: Any, context: Context) -> Any:
        if isinstance(caller, str):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, caller)
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


def _stream_response(behavior: Callable[..., Any], method: str, caller: Caller | str) -> Any:
    async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(caller, str):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, caller)
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
        caller = caller_from_metadata(handler_call_details.invocation_metadata)
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
