"""Plaintext only when asked for, and never silently: the CLI against `central serve --insecure`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpilot.channel import write_token_file
from gridpilot.cli import gb2_jobs
from tests.cli.conftest import CliRunner
from tests.support.central_process import CentralHandle, running_central

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plain_central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    with running_central(tmp_path_factory.mktemp("plain"), insecure=True) as handle:
        yield handle


def test_insecure_needs_the_setting_and_warns(
    plain_central: CentralHandle,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    write_token_file(token_file, plain_central.user_token("alice"))
    monkeypatch.setenv("GRIDPILOT_TOKEN_FILE", str(token_file))
    argv = ["--json", "--central", plain_central.target]
    # Without a CA and without the insecure setting: refused before any connection.
    refused = run_cli(gb2_jobs.job_status_main, argv)
    assert refused.code != 0
    assert "no CA certificate to verify central with: set GRIDPILOT_CA" in refused.err
    monkeypatch.setenv("GRIDPILOT_INSECURE", "1")
    plain = run_cli(gb2_jobs.job_status_main, argv)
    assert plain.code == 0, plain.err
    assert json.loads(plain.out) == []
    assert plain.err == "gb2_job_status: warning: connecting to central WITHOUT TLS\n"
