"""Fixtures for CLI tests: a clean client environment and a real central with a small dataset."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridpilot.channel import open_sync_channel
from gridpilot.checksum import adler32_of_bytes
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
    for name in ("GRIDPILOT_CENTRAL", "GRIDPILOT_GROUP", "GRIDPILOT_RPC_TIMEOUT", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIDPILOT_USER", USER)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


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
    with open_sync_channel(central.target) as channel:
        data_pb2_grpc.DataServiceStub(channel).RegisterReplicas(
            data_pb2.RegisterReplicasRequest(replicas=registrations),
            metadata=(("x-gridpilot-user", USER),),
            timeout=10,
        )


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    """One real central per test module, with DATASET registered (N_FILES files on LOCAL_SE)."""
    with running_central(tmp_path_factory.mktemp("central")) as handle:
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
