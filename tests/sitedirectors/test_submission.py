"""Submitting pilots with credentials: each pilot's own registration token, minted before
anything is recorded; the pilot command never carries a token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpilot.channel import read_token_file
from gridpilot.client_settings import decode_token
from sitedirectors.central_client import CentralClient, CentralError
from sitedirectors.config import QueueSection
from sitedirectors.director import director_security
from sitedirectors.journal import Journal
from sitedirectors.local import LocalBackend
from sitedirectors.submission import pilot_arguments, submit_pilots, token_lifetime
from tests.sitedirectors.helpers import (
    director_config,
    director_token_file,
    kill_pilots,
    list_pilots,
)
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle, running_central


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralHandle]:
    with running_central(tmp_path / "central") as handle:
        yield handle


def test_pilot_command_has_no_credentials() -> None:
    """The backend ships them (a file for the token, the CA's path): argv is public."""
    queue = QueueSection(name=QUEUE, site=SITE, ce=CE)
    argv = pilot_arguments(queue, "c:1", "p1")
    assert "--token-file" not in argv
    assert "--ca" not in argv
    assert "--insecure" not in argv
    assert pilot_arguments(queue, "c:1", "p1", insecure=True)[-1] == "--insecure"


def test_each_pilot_gets_its_own_registration_token(tmp_path: Path, central: CentralHandle) -> None:
    cfg = director_config(tmp_path, central)
    client = CentralClient(central.target, cfg.director.name, director_security(cfg))
    backend = LocalBackend(tmp_path / "pilots", kill_grace=1.0)
    try:
        report = submit_pilots(
            queue=cfg.queues[0],
            backend=backend,
            count=3,
            client=client,
            journal=Journal(tmp_path / "journal.json"),
            central=central.target,
            now=time.time(),
            ca=central.ca_path,
        )
        assert report.submitted == 3
        tokens = [
            read_token_file(d / "registration.token") for d in (tmp_path / "pilots").iterdir()
        ]
        claims = [decode_token(t) for t in tokens]
        assert len({c.jti for c in claims}) == 3
        assert {(c.role, c.subject) for c in claims} == {("pilot_registration", "test-director")}
        assert len(list_pilots(central)) == 3
    finally:
        client.close()
        kill_pilots(tmp_path / "pilots")


def test_refused_minting_records_and_submits_nothing(
    tmp_path: Path, central: CentralHandle
) -> None:
    cfg = director_config(tmp_path, central)
    # The director's token does not cover the queue's site.
    director_token_file(tmp_path, central, ["LCG.OTHER.xx"])
    client = CentralClient(central.target, cfg.director.name, director_security(cfg))
    backend = LocalBackend(tmp_path / "pilots", kill_grace=1.0)
    try:
        with pytest.raises(CentralError) as info:
            submit_pilots(
                queue=cfg.queues[0],
                backend=backend,
                count=2,
                client=client,
                journal=Journal(tmp_path / "journal.json"),
                central=central.target,
                now=time.time(),
                ca=central.ca_path,
            )
    finally:
        client.close()
    assert info.value.method == "MintPilotTokens"
    assert info.value.code == "PERMISSION_DENIED"
    assert list_pilots(central) == []
    assert not (tmp_path / "pilots").exists()


@pytest.mark.parametrize(
    ("requested", "cap", "expected"),
    [
        (3600.0, 0.0, 3600.0),  # no cap of the backend's own
        (3600.0, 900.0, 900.0),  # the backend's cap wins
        (600.0, 900.0, 600.0),  # a shorter queue setting stays
        (0.0, 900.0, 900.0),  # central's default replaced by the cap
        (0.0, 0.0, 0.0),
    ],
)
def test_registration_token_lifetime_is_capped_by_the_backend(
    requested: float, cap: float, expected: float
) -> None:
    assert token_lifetime(requested, cap) == expected
