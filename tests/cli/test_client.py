"""Client settings: where central is, who the caller is, and how RPC errors read."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest

from gridpilot.client import (
    DEFAULT_GROUP,
    GROUP_METADATA_KEY,
    USER_METADATA_KEY,
    CentralClient,
    CentralUnreachableError,
    ClientError,
    ClientSettings,
    resolve_central,
    resolve_group,
    resolve_timeout,
    resolve_user,
)
from gridpilot.v1 import jobs_pb2


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GRIDPILOT_CENTRAL", "GRIDPILOT_USER", "GRIDPILOT_GROUP", "GRIDPILOT_RPC_TIMEOUT"):
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
    with pytest.raises(ClientError, match="must be a HOST:PORT string"):
        resolve_central()


def test_identity_from_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "login-name")
    monkeypatch.setenv("LOGNAME", "login-name")
    assert resolve_user() == "login-name"
    assert resolve_group() == DEFAULT_GROUP == "belle_user"
    monkeypatch.setenv("GRIDPILOT_USER", "alice")
    monkeypatch.setenv("GRIDPILOT_GROUP", "belle_admin")
    settings = ClientSettings.resolve("h:1")
    assert settings.metadata() == (
        (USER_METADATA_KEY, "alice"),
        (GROUP_METADATA_KEY, "belle_admin"),
    )


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
    settings = ClientSettings(central=target, user="alice", group="belle_user", timeout=5.0)
    with CentralClient(settings) as client, pytest.raises(CentralUnreachableError) as info:
        client.call(client.jobs.ListJobs, jobs_pb2.ListJobsRequest())
    assert str(info.value).startswith(f"cannot reach central at {target}: ")
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_client_outside_context_is_a_bug() -> None:
    client = CentralClient(ClientSettings(central="h:1", user="a", group="g"))
    with pytest.raises(RuntimeError, match="outside its context"):
        _ = client.jobs
