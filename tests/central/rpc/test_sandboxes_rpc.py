from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gridpilot.v1 import sandboxes_pb2
from tests.support.inprocess import Env, inprocess_central, run

LIMIT = 100_000
SMALL = {"central": {"sandbox_max_bytes": LIMIT}}
Header = sandboxes_pb2.SandboxHeader


def _stream(
    data: bytes, announced: int | None = None, chunk: int = 16_384, kind: int = Header.KIND_INPUT
) -> AsyncIterator[sandboxes_pb2.UploadSandboxRequest]:
    async def gen() -> AsyncIterator[sandboxes_pb2.UploadSandboxRequest]:
        size = len(data) if announced is None else announced
        yield sandboxes_pb2.UploadSandboxRequest(header=Header(kind=kind, size=size))  # type: ignore[arg-type]
        for i in range(0, len(data), chunk):
            yield sandboxes_pb2.UploadSandboxRequest(data=data[i : i + chunk])

    return gen()


async def _download(env: Env, sandbox_id: str) -> bytes:
    call = env.sandboxes.DownloadSandbox(
        sandboxes_pb2.DownloadSandboxRequest(sandbox_id=sandbox_id)
    )
    return b"".join([r.data async for r in call])


def _stored_files(env: Env) -> list[Path]:
    root = env.central.sandboxes.root
    return [p for p in root.rglob("*") if p.is_file()]


def test_upload_download_roundtrip_and_dedup(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, SMALL) as env:
            data = bytes(range(256)) * 300  # 76,800 bytes, several chunks
            reply = await env.sandboxes.UploadSandbox(_stream(data), metadata=env.as_user("alice"))
            assert reply.sandbox_id == hashlib.sha256(data).hexdigest()
            assert reply.size == len(data)
            record = await env.central.store.get_sandbox(reply.sandbox_id)
            assert record is not None
            assert record.owner == "alice"
            assert record.kind == "input"
            assert await _download(env, reply.sandbox_id) == data
            again = await env.sandboxes.UploadSandbox(_stream(data))
            assert again.sandbox_id == reply.sandbox_id
            assert len(_stored_files(env)) == 1

    run(body())


@pytest.mark.parametrize("announced", [None, 10])
def test_too_large_is_refused_and_nothing_stored(tmp_path: Path, announced: int | None) -> None:
    """Refused whether the client announces the real size or lies about it."""

    async def body() -> None:
        async with inprocess_central(tmp_path, SMALL) as env:
            data = b"x" * (LIMIT + 1)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.sandboxes.UploadSandbox(_stream(data, announced))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = err.value.details() or ""
            assert "limit" in details
            assert "nothing stored" in details
            assert _stored_files(env) == []
            digest = hashlib.sha256(data).hexdigest()
            assert await env.central.store.get_sandbox(digest) is None

    run(body())


def test_bad_uploads_and_downloads(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, SMALL) as env:

            async def data_first() -> AsyncIterator[sandboxes_pb2.UploadSandboxRequest]:
                yield sandboxes_pb2.UploadSandboxRequest(data=b"abc")

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.sandboxes.UploadSandbox(data_first())
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.sandboxes.UploadSandbox(_stream(b"abc", kind=Header.KIND_OUTPUT))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "job id" in (err.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _download(env, "0" * 64)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _download(env, "../../etc/passwd")
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert _stored_files(env) == []

    run(body())
