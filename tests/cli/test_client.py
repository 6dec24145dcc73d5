"""Client settings: where central is, who the caller is, and how RPC errors read."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from gridpilot.channel import write_token_file
from gridpilot.client import CentralClient, translate_rpc_error
from gridpilot.client_errors import (
    CentralRequestError,
    CentralUnreachableError,
    ClientError,
    TokenExpiredError,
    TokenMissingError,
)
from gridpilot.client_settings import (
    ClientSettings,
    load_token,
    resolve_ca,
    resolve_central,
    resolve_insecure,
    resolve_login,
    resolve_timeout,
    resolve_user_cert,
    token_file_path,
)
from gridpilot.security.ca import init_ca, issue_server_cert
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tls import ClientTls, ServerTls
from gridpilot.security.tokens import TokenIssuer
from gridpilot.v1 import jobs_pb2

ENV = (
    "GRIDPILOT_CENTRAL",
    "GRIDPILOT_LOGIN",
    "GRIDPILOT_CA",
    "GRIDPILOT_CERT",
    "GRIDPILOT_KEY",
    "GRIDPILOT_TOKEN_FILE",
    "GRIDPILOT_INSECURE",
    "GRIDPILOT_RPC_TIMEOUT",
)


def _token(tmp_path: Path, lifetime: float = 3600, clock: float | None = None) -> str:
    keys = KeySet.load_or_create(tmp_path / "keys")
    issuer = TokenIssuer(
        keys, issuer="gridpilot", audience="gridpilot", clock=lambda: clock or time.time()
    )
    token, _claims = issuer.issue(
        sub="alice", role=Role.USER, group="belle_user", lifetime=lifetime
    )
    return token


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _write_client_toml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config" / "gridpilot" / "client.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_option_beats_env_beats_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _write_client_toml(tmp_path, 'central = "file-host:1"\n')
    assert resolve_central() == "file-host:1"
    monkeypatch.setenv("GRIDPILOT_CENTRAL", "env-host:2")
    assert resolve_central() == "env-host:2"
    assert resolve_central("opt-host:3") == "opt-host:3"


def test_no_central_configured_says_how_to_configure() -> None:
    with pytest.raises(ClientError, match=r"--central HOST:PORT.*GRIDPILOT_CENTRAL"):
        resolve_central()


@pytest.mark.parametrize("bad", ["localhost", "localhost:http", ":50051", "host:"])
def test_bad_address_is_refused(bad: str) -> None:
    with pytest.raises(ClientError, match="not HOST:PORT"):
        resolve_central(bad)


def test_unreadable_config_file_names_the_file(tmp_path: Path) -> None:
    _write_client_toml(tmp_path, "central = [unclosed\n")
    with pytest.raises(ClientError, match=r"client\.toml"):
        resolve_central()


def test_non_string_central_in_file(tmp_path: Path) -> None:
    _write_client_toml(tmp_path, "central = 5\n")
    with pytest.raises(ClientError, match="must be a non-empty string"):
        resolve_central()


def test_login_address_and_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ClientError, match=r"--login HOST:PORT.*GRIDPILOT_LOGIN"):
        resolve_login()
    _write_client_toml(tmp_path, 'login = "h:2"\nca = "/nowhere/ca.pem"\n')
    assert resolve_login() == "h:2"
    assert resolve_login("o:3") == "o:3"
    with pytest.raises(ClientError, match=r"CA certificate /nowhere/ca.pem does not exist"):
        resolve_ca()
    assert token_file_path() == tmp_path / "config" / "gridpilot" / "token"
    monkeypatch.setenv("GRIDPILOT_TOKEN_FILE", str(tmp_path / "t"))
    assert token_file_path() == tmp_path / "t"
    assert token_file_path(tmp_path / "opt") == tmp_path / "opt"


def test_no_ca_says_how_to_configure() -> None:
    with pytest.raises(ClientError, match=r"GRIDPILOT_CA.*client\.toml"):
        resolve_ca()


def test_insecure_only_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_insecure() is False
    monkeypatch.setenv("GRIDPILOT_INSECURE", "1")
    assert resolve_insecure() is True
    monkeypatch.setenv("GRIDPILOT_INSECURE", "maybe")
    with pytest.raises(ClientError, match="use 1 or 0"):
        resolve_insecure()
    monkeypatch.delenv("GRIDPILOT_INSECURE")
    _write_client_toml(tmp_path, "insecure = true\n")
    assert resolve_insecure() is True


def test_user_cert_needs_both_halves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_user_cert() is None
    monkeypatch.setenv("GRIDPILOT_CERT", str(tmp_path / "c.pem"))
    with pytest.raises(ClientError, match="both GRIDPILOT_CERT and GRIDPILOT_KEY"):
        resolve_user_cert()
    monkeypatch.setenv("GRIDPILOT_KEY", str(tmp_path / "c.key"))
    with pytest.raises(ClientError, match="does not exist"):
        resolve_user_cert()
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "c.key").write_text("key")
    assert resolve_user_cert() == (tmp_path / "c.pem", tmp_path / "c.key")


def test_identity_comes_from_the_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    monkeypatch.setenv("GRIDPILOT_CA", str(tmp_path / "ca" / "ca.pem"))
    path = tmp_path / "token"
    write_token_file(path, _token(tmp_path))
    settings = ClientSettings.resolve("h:1", token_file=path)
    assert (settings.user, settings.group) == ("alice", "belle_user")
    assert settings.tls is not None
    assert settings.security().current_token() == path.read_text().strip()


def test_missing_token_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(TokenMissingError) as info:
        load_token(tmp_path / "token")
    assert str(info.value).startswith("no token: run gb2_proxy_init -g <group>")


def test_expired_token_says_when_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "token"
    write_token_file(path, _token(tmp_path, lifetime=60, clock=time.time() - 3600))
    with pytest.raises(
        TokenExpiredError,
        match=r"your token expired at \d{4}-.* UTC: run gb2_proxy_init -g belle_user",
    ):
        load_token(path)
    _token_text, info = load_token(path, allow_expired=True)
    assert info.expired()


def test_world_readable_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    write_token_file(path, _token(tmp_path))
    os.chmod(path, 0o644)
    with pytest.raises(ClientError, match="readable by other users"):
        load_token(path)


def test_garbage_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    write_token_file(path, "not-a-jwt")
    with pytest.raises(ClientError, match="not a valid token"):
        load_token(path)


_ABORTS = {
    b"unauth": (grpc.StatusCode.UNAUTHENTICATED, "token refused (revoked): gone"),
    b"denied": (grpc.StatusCode.PERMISSION_DENIED, "job 3 belongs to bob"),
}


def _abort(request: bytes, context: grpc.ServicerContext) -> bytes:
    code, details = _ABORTS[request]
    context.abort(code, details)
    raise AssertionError("abort returned")


@pytest.fixture
def aborting_server() -> Iterator[str]:
    """A real gRPC server answering the method /t.T/Abort with the status the request names."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "t.T", {"Abort": grpc.unary_unary_rpc_method_handler(_abort)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def _status_of(target: str, request: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        try:
            method: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.T/Abort")
            method(request, timeout=5)
        except grpc.RpcError as exc:
            return exc
    raise AssertionError("the call did not fail")


def test_auth_errors_read_as_one_line(aborting_server: str, tmp_path: Path) -> None:
    unauth = translate_rpc_error(_status_of(aborting_server, b"unauth"), "h:1")
    assert isinstance(unauth, CentralRequestError)
    assert str(unauth) == (
        "not authenticated: token refused (revoked): gone (run gb2_proxy_init -g <group>)"
    )
    denied = translate_rpc_error(_status_of(aborting_server, b"denied"), "h:1")
    assert str(denied) == "permission denied: job 3 belongs to bob"


def test_tls_handshake_failure_says_so(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    issue_server_cert(tmp_path / "ca", tmp_path / "srv", ["127.0.0.1"])
    init_ca(tmp_path / "other")
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    tls = ServerTls(tmp_path / "srv" / "server.pem", tmp_path / "srv" / "server.key")
    port = server.add_secure_port("127.0.0.1:0", tls.credentials())
    server.start()
    target = f"127.0.0.1:{port}"
    try:
        settings = ClientSettings(
            central=target, token="t", tls=ClientTls(ca=tmp_path / "other" / "ca.pem"), timeout=5
        )
        with CentralClient(settings) as client, pytest.raises(CentralUnreachableError) as info:
            client.call(client.jobs.ListJobs, jobs_pb2.ListJobsRequest())
    finally:
        server.stop(None)
    assert str(info.value).startswith(f"TLS handshake with central at {target} failed")


def test_timeout_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDPILOT_RPC_TIMEOUT", "2.5")
    assert resolve_timeout() == 2.5
    monkeypatch.setenv("GRIDPILOT_RPC_TIMEOUT", "soon")
    with pytest.raises(ClientError, match="not a number"):
        resolve_timeout()
    monkeypatch.setenv("GRIDPILOT_RPC_TIMEOUT", "0")
    with pytest.raises(ClientError, match="positive"):
        resolve_timeout()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_central_is_one_clear_error() -> None:
    target = f"127.0.0.1:{_closed_port()}"
    settings = ClientSettings(central=target, token="t", tls=None, timeout=5.0)
    with CentralClient(settings) as client, pytest.raises(CentralUnreachableError) as info:
        client.call(client.jobs.ListJobs, jobs_pb2.ListJobsRequest())
    assert str(info.value).startswith(f"cannot reach central at {target}: ")
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_client_outside_context_is_a_bug() -> None:
    client = CentralClient(ClientSettings(central="h:1", token="t", tls=None))
    with pytest.raises(RuntimeError, match="outside its context"):
        _ = client.jobs
