"""SandboxService: streamed upload (header first) and download of sandboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from central.logic import sandboxes
from central.logic.errors import InvalidArgumentError
from central.logic.identity import require_caller
from gridpilot.v1 import sandboxes_pb2, sandboxes_pb2_grpc

if TYPE_CHECKING:
    from central.server import Central

Context = grpc.aio.ServicerContext[Any, Any]

_KINDS = {
    sandboxes_pb2.SandboxHeader.KIND_INPUT: sandboxes.SandboxKind.INPUT,
    sandboxes_pb2.SandboxHeader.KIND_OUTPUT: sandboxes.SandboxKind.OUTPUT,
}


def _header(h: sandboxes_pb2.SandboxHeader) -> sandboxes.UploadHeader:
    kind = _KINDS.get(h.kind)
    if kind is None:
        raise InvalidArgumentError("sandbox header: kind must be input or output")
    if h.size < 0:
        raise InvalidArgumentError(f"sandbox header: negative size {h.size}")
    return sandboxes.UploadHeader(kind=kind, job_id=h.job_id, attempt=h.attempt, size=h.size)


async def _data(
    requests: AsyncIterator[sandboxes_pb2.UploadSandboxRequest],
) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("item") != "data":
            raise InvalidArgumentError("sandbox upload: only data may follow the header")
        yield request.data


class SandboxServicer(sandboxes_pb2_grpc.SandboxServiceServicer):
    def __init__(self, central: Central) -> None:
        self.c = central

    async def UploadSandbox(
        self,
        request_iterator: AsyncIterator[sandboxes_pb2.UploadSandboxRequest],
        context: Context,
    ) -> sandboxes_pb2.UploadSandboxResponse:
        c = self.c
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            raise InvalidArgumentError("sandbox upload: empty stream") from None
        if first.WhichOneof("item") != "header":
            raise InvalidArgumentError("sandbox upload: the first message must be the header")
        sandbox_id, size = await sandboxes.upload_sandbox(
            c.store,
            c.sandboxes,
            caller=require_caller(),
            header=_header(first.header),
            chunks=_data(request_iterator),
            now=c.clock(),
        )
        return sandboxes_pb2.UploadSandboxResponse(sandbox_id=sandbox_id, size=size)

    async def DownloadSandbox(
        self, request: sandboxes_pb2.DownloadSandboxRequest, context: Context
    ) -> AsyncIterator[sandboxes_pb2.DownloadSandboxResponse]:
        chunks = await sandboxes.download_sandbox(
            self.c.store, self.c.sandboxes, require_caller(), request.sandbox_id
        )
        async for chunk in chunks:
            yield sandboxes_pb2.DownloadSandboxResponse(data=chunk)
