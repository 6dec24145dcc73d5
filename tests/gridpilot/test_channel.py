"""gridpilot.channel against a real TLS server: the bearer token on every kind of call, token
sources read per call, plaintext only when asked, token files private."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gridpilot.channel import (
    AUTHORIZATION_KEY,
    INSECURE_WARNING,
    ClientSecurity,
    FileToken,
    MutableToken,
    StaticToken,
    TokenFileError,
    consume_token_file,
    open_channel,
    open_sync_channel,
    read_token_file,
    write_token_file,
)
from gridpilot.security.ca import init_ca, issue_server_cert
from gridpilot.security.tls import ClientTls, ServerTls

SERVICE = "test.Echo"


def _auth(context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    values = [v for k, v in context.invocation_metadata() or () if k == AUTHORIZATION_KEY]
    return str(values).encode()


async def _unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return _auth(context)


async def _server_stream(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    yield _auth(context)


async def _client_stream(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
) -> bytes:
    async for _ in requests:
        pass
    return _auth(context)


async def _bidi(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield _auth(context)


HANDLER = grpc.method_handlers_generic_handler(
    SERVICE,
    {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    },
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    init_ca(root / "ca")
    issue_server_cert(root / "ca", root / "server", ["localhost", "127.0.0.1"])
    return root


def _serve(pki: Path | None, body: Any) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((HANDLER,))
        if pki is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            tls = ServerTls(pki / "server" / "server.pem", pki / "server" / "server.key")
            port = server.add_secure_port("127.0.0.1:0", tls.credentials())
        await server.start()
        try:
            await body(f"127.0.0.1:{port}")
        finally:
            await server.stop(None)

    asyncio.run(asyncio.wait_for(main(), 30))


def _method(channel: Any, kind: str, name: str) -> Any:
    """A multi-callable for the echo service (raw bytes in and out)."""
    return getattr(channel, kind)(f"/{SERVICE}/{name}")


def _expect(token: str) -> bytes:
    return str([f"Bearer {token}"] if token else []).encode()


def test_aio_channel_sends_current_token_on_every_kind_of_call(pki: Path) -> None:
    source = MutableToken("registration")

    async def body(target: str) -> None:
        security = ClientSecurity(ClientTls(ca=pki / "ca" / "ca.pem"), source)
        async with open_channel(target, security) as channel:
            unary = _method(channel, "unary_unary", "Unary")
            assert await unary(b"x", timeout=5) == _expect("registration")
            source.set("session")
            assert await unary(b"x", timeout=5) == _expect("session")
            stream = _method(channel, "unary_stream", "ServerStream")
            assert [r async for r in stream(b"x", timeout=5)] == [_expect("session")]
            client_stream = _method(channel, "stream_unary", "ClientStream")
            assert await client_stream(iter([b"a", b"b"]), timeout=5) == _expect("session")
            # The pilot's session stream: write/read on the call object.
            bidi = _method(channel, "stream_stream", "Bidi")()
            await bidi.write(b"hello")
            assert await bidi.read() == _expect("session")
            await bidi.done_writing()
            assert await bidi.read() is grpc.aio.EOF

    _serve(pki, body)


def test_sync_channel_sends_token_and_replaces_callers_authorization(pki: Path) -> None:
    async def body(target: str) -> None:
        def calls() -> None:
            security = ClientSecurity(ClientTls(ca=pki / "ca" / "ca.pem"), StaticToken("t1"))
            with open_sync_channel(target, security) as channel:
                unary = _method(channel, "unary_unary", "Unary")
                assert unary(b"x", timeout=5) == _expect("t1")
                # A caller's own authorization header never travels next to ours.
                forged = ((AUTHORIZATION_KEY, "Bearer other"),)
                assert unary(b"x", timeout=5, metadata=forged) == _expect("t1")
                stream = _method(channel, "unary_stream", "ServerStream")
                assert list(stream(b"x", timeout=5)) == [_expect("t1")]
                client_stream = _method(channel, "stream_unary", "ClientStream")
                assert client_stream(iter([b"a"]), timeout=5) == _expect("t1")
                bidi = _method(channel, "stream_stream", "Bidi")
                assert list(bidi(iter([b"a", b"b"]), timeout=5)) == [_expect("t1")] * 2

        await asyncio.to_thread(calls)

    _serve(pki, body)


def test_no_token_source_sends_no_header(pki: Path) -> None:
    async def body(target: str) -> None:
        security = ClientSecurity(ClientTls(ca=pki / "ca" / "ca.pem"), None)
        async with open_channel(target, security) as channel:
            assert await _method(channel, "unary_unary", "Unary")(b"", timeout=5) == _expect("")

    _serve(pki, body)


def test_channel_refuses_server_of_another_ca(pki: Path, tmp_path: Path) -> None:
    init_ca(tmp_path / "other")

    async def body(target: str) -> None:
        security = ClientSecurity(ClientTls(ca=tmp_path / "other" / "ca.pem"), StaticToken("t"))
        async with open_channel(target, security) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _method(channel, "unary_unary", "Unary")(b"", timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE

    _serve(pki, body)


def test_insecure_channel_only_when_asked_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="--ca"):
        ClientSecurity.from_options(ca=None, insecure=False, token=None)

    async def body(target: str) -> None:
        security = ClientSecurity.from_options(ca=None, insecure=True, token=StaticToken("t"))
        assert security.tls is None
        with caplog.at_level(logging.WARNING):
            async with open_channel(target, security) as channel:
                answer = await _method(channel, "unary_unary", "Unary")(b"", timeout=5)
        assert answer == _expect("t")

    _serve(None, body)
    assert any(getattr(r, "fields", {}).get("warning") == INSECURE_WARNING for r in caplog.records)


def test_token_file_written_private_and_atomically(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "token"
    write_token_file(path, "abc.def.ghi")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_token_file(path) == "abc.def.ghi"
    write_token_file(path, "new")
    assert read_token_file(path) == "new"
    assert [p.name for p in path.parent.iterdir()] == ["token"]


def test_world_readable_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("abc\n")
    os.chmod(path, 0o644)
    with pytest.raises(TokenFileError, match=r"readable by other users \(mode 0644\)"):
        read_token_file(path)
    os.chmod(path, 0o640)
    with pytest.raises(TokenFileError, match="chmod 600"):
        read_token_file(path)


def test_missing_and_empty_token_files(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="does not exist"):
        read_token_file(tmp_path / "nope")
    empty = tmp_path / "empty"
    write_token_file(empty, "")
    with pytest.raises(TokenFileError, match="is empty"):
        read_token_file(empty)


def test_consumed_token_file_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "registration.token"
    write_token_file(path, "once")
    assert consume_token_file(path) == "once"
    assert not path.exists()
    with pytest.raises(TokenFileError):
        consume_token_file(path)


def test_file_token_follows_replacements(tmp_path: Path) -> None:
    path = tmp_path / "director.token"
    write_token_file(path, "first")
    source = FileToken(path)
    assert source.token() == "first"
    write_token_file(path, "second-and-longer")
    assert source.token() == "second-and-longer"
    path.unlink()
    # Briefly gone (being replaced): keep the last good token.
    assert source.token() == "second-and-longer"
