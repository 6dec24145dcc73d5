"""Fixtures for CLI tests: a clean client environment and a real central (TLS, tokens, the
certificate login port) with a small dataset; `alice` logs the user in."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridpilot.channel import write_token_file
from gridpilot.checksum import adler32_of_bytes
from gridpilot.security.ca import init_ca
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer
from gridpilot.v1 import data_pb2, data_pb2_grpc
from tests.support.central_process import LOCAL_SE, CentralHandle, running_central

USER = "alice"
DATASET = "/belle/user/alice/ds_in"
N_FILES = 3


@dataclass
class CliResult:
    code: int
    out: str
    err: str


CliRunner = Callable[..., CliResult]


@pytest.fixture(autouse=True)
def client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the developer's environment or ~/.config."""
    for name in [*(n for n in os.environ if n.startswith("GRIDPILOT_")), "COLUMNS"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    # No ~/.globus certificate of the developer's either.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def log_in(
    monkeypatch: pytest.MonkeyPatch,
    central: CentralHandle,
    token_file: Path,
    user: str = USER,
    group: str = "belle_user",
) -> Path:
    """What gb2_proxy_init leaves behind: the user's token (0600) and the CA setting."""
    write_token_file(token_file, central.user_token(user, group))
    monkeypatch.setenv("GRIDPILOT_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("GRIDPILOT_CA", str(central.ca_path))
    return token_file


def offline_login(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, lifetime: float = 3600, age: float = 0
) -> Path:
    """A user token signed by keys of no running central (for tests that never reach one):
    the token file and a CA, as gb2_proxy_init and the client settings would leave them."""
    ca = tmp_path / "offline-ca" / "ca.pem"
    if not ca.exists():
        init_ca(ca.parent)
    issuer = TokenIssuer(
        KeySet.load_or_create(tmp_path / "offline-keys"),
        issuer="gridpilot",
        audience="gridpilot",
        clock=lambda: time.time() - age,
    )
    token, _claims = issuer.issue(sub=USER, role=Role.USER, group="belle_user", lifetime=lifetime)
    token_file = tmp_path / "offline.token"
    write_token_file(token_file, token)
    monkeypatch.setenv("GRIDPILOT_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("GRIDPILOT_CA", str(ca))
    return token_file


@pytest.fixture
def alice(central: CentralHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Logged in as the test user (belle_user); the token file's path."""
    return log_in(monkeypatch, central, tmp_path / "alice.token")


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run a command's main() in-process; `stdin` is what the user types."""

    def runner(main: Callable[[list[str]], int], argv: list[str], stdin: str = "") -> CliResult:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(argv)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return runner


def register_files(
    central: CentralHandle, lfn_data: dict[str, bytes], ses: tuple[str, ...] = (LOCAL_SE,)
) -> None:
    """Put files on file:// SEs and register them in central's catalog, as data management would."""
    registrations = []
    for lfn, data in lfn_data.items():
        for se in ses:
            path = central.se_dirs[se] / lfn.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            registrations.append(
                data_pb2.ReplicaRegistration(
                    lfn=lfn, se=se, size=len(data), adler32=adler32_of_bytes(data)
                )
            )
    with central.sync_channel(central.admin_token()) as channel:
        data_pb2_grpc.DataServiceStub(channel).RegisterReplicas(
            data_pb2.RegisterReplicasRequest(replicas=registrations), timeout=10
        )


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    """One real central per test module, with DATASET registered (N_FILES files on LOCAL_SE)
    and the certificate login port (`login_target`) served."""
    with running_central(tmp_path_factory.mktemp("central"), login=True) as handle:
        register_files(
            handle,
            {f"{DATASET}/sub00/f{i}.root": os.urandom(2000 + i) for i in range(N_FILES)},
        )
        yield handle


@pytest.fixture
def steering(tmp_path: Path) -> Path:
    path = tmp_path / "steer.py"
    path.write_text("import basf2\nbasf2.process(basf2.create_path())\n")
    return path
