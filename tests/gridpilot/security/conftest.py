"""Shared fixtures: a throw-away PKI, a key set, and a clock the tests move by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from gridpilot.security.ca import init_ca, issue_client_cert, issue_server_cert
from gridpilot.security.keys import KeySet

ISSUER = "gridpilot"
AUDIENCE = "gridpilot"
START = 1_800_000_000.0


@dataclass
class Pki:
    ca_dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


class FakeClock:
    """A clock the test sets; TokenIssuer/TokenVerifier take any () -> float."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_pki(root: Path, hosts: list[str], client_cn: str = "director-kek") -> Pki:
    ca_dir = root / "ca"
    ca = init_ca(ca_dir, common_name=f"test CA {root.name}")
    server_cert, server_key = issue_server_cert(ca_dir, root / "server", hosts)
    client_cert, client_key = issue_client_cert(ca_dir, root / "client", client_cn)
    return Pki(ca_dir, ca, server_cert, server_key, client_cert, client_key)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), ["localhost", "127.0.0.1"])


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-pki"), ["localhost", "127.0.0.1"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keyset(tmp_path: Path) -> KeySet:
    return KeySet.load_or_create(tmp_path / "keys", now=START)
