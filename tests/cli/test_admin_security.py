"""`gridpilot admin` security actions against a real central: service tokens, bans, drains,
revocations; and that only an admin may use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.channel import ClientSecurity, FileToken
from gridpilot.cli import gb2_jobs
from gridpilot.cli import main as umbrella
from gridpilot.client_settings import decode_token
from sitedirectors.central_client import CentralClient as DirectorClient
from sitedirectors.config import QueueSection
from tests.cli.conftest import CliRunner, log_in
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle

pytestmark = pytest.mark.e2e

SITE_QUEUE = QueueSection(name=QUEUE, site=SITE, ce=CE)


@pytest.fixture
def admin(central: CentralHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    log_in(monkeypatch, central, tmp_path / "ops.token", "ops", "belle_admin")
    return ["--central", central.target]


def _director(central: CentralHandle, token_file: Path) -> DirectorClient:
    assert central.ca_path is not None
    security = ClientSecurity.from_options(
        ca=central.ca_path, insecure=False, token=FileToken(token_file)
    )
    return DirectorClient(central.target, "sd-test", security, timeout=10)


def test_service_token_for_a_site_director(
    central: CentralHandle, admin: list[str], run_cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "sd.token"
    result = run_cli(
        umbrella.main,
        ["admin", "service-token", "--subject", "sd-test", "--role", "site_director",
         "--sites", SITE, "--out", str(out), *admin],
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "site_director token for sd-test" in result.out
    assert out.stat().st_mode & 0o777 == 0o600
    info = decode_token(out.read_text().strip())
    assert (info.subject, info.role, info.sites) == ("sd-test", "site_director", (SITE,))
    # The token works as a director's: it mints registration tokens for its own site.
    client = _director(central, out)
    try:
        assert len(client.mint_pilot_tokens(SITE_QUEUE, 3)) == 3
    finally:
        client.close()
    missing_sites = run_cli(
        umbrella.main,
        ["admin", "service-token", "--subject", "x", "--role", "site_director", *admin],
    )
    assert missing_sites.code == 2
    assert "needs --sites" in missing_sites.err


def test_only_admins_may_act(
    central: CentralHandle,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    log_in(monkeypatch, central, tmp_path / "alice.token")
    c = ["--central", central.target]
    for action in (["ban-site", SITE], ["ban-user", "bob"], ["drain", "--site", SITE],
                   ["revoke", "--user", "bob"], ["revocations"]):  # fmt: skip
        result = run_cli(umbrella.main, ["admin", *action, *c])
        assert result.code != 0, action
        assert result.err.startswith(f"gridpilot admin {action[0]}: error: permission denied: ")
        assert result.err.count("\n") == 1


def test_ban_and_unban_a_user(
    central: CentralHandle,
    admin: list[str],
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    banned = run_cli(umbrella.main, ["admin", "ban-user", "bob", "--reason", "abuse", *admin])
    assert banned.code == 0, banned.err
    assert banned.out.strip() == "user bob banned"
    log_in(monkeypatch, central, tmp_path / "bob.token", "bob")
    refused = run_cli(gb2_jobs.job_status_main, ["--central", central.target])
    assert refused.code != 0
    assert refused.err == "gb2_job_status: error: permission denied: user bob is banned\n"
    log_in(monkeypatch, central, tmp_path / "ops.token", "ops", "belle_admin")
    lifted = run_cli(umbrella.main, ["admin", "ban-user", "bob", "--unban", *admin])
    assert lifted.out.strip() == "user bob no longer banned"
    log_in(monkeypatch, central, tmp_path / "bob.token", "bob")
    assert run_cli(gb2_jobs.job_status_main, ["--central", central.target]).code == 0


def test_ban_site_blocks_its_demand(
    central: CentralHandle, admin: list[str], run_cli: CliRunner, tmp_path: Path
) -> None:
    token_file = tmp_path / "sd.token"
    token_file.write_text(central.director_token([SITE], name="sd-test"))
    token_file.chmod(0o600)
    client = _director(central, token_file)
    try:
        assert not client.get_demand([SITE_QUEUE])[QUEUE].blocked
        assert run_cli(umbrella.main, ["admin", "ban-site", SITE, *admin]).code == 0
        assert client.get_demand([SITE_QUEUE])[QUEUE].blocked
        unbanned = run_cli(umbrella.main, ["admin", "ban-site", SITE, "--unban", *admin])
        assert unbanned.out.strip() == f"site {SITE} no longer banned"
        assert not client.get_demand([SITE_QUEUE])[QUEUE].blocked
    finally:
        client.close()


def test_drain_a_site_without_pilots(
    central: CentralHandle, admin: list[str], run_cli: CliRunner
) -> None:
    result = run_cli(umbrella.main, ["admin", "drain", "--site", SITE, *admin])
    assert result.code == 0, result.err
    assert result.out.strip().endswith("pilot(s) told to drain")


def test_revoke_a_user(
    central: CentralHandle,
    admin: list[str],
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    result = run_cli(umbrella.main, ["admin", "revoke", "--user", "dave", *admin])
    assert result.code == 0, result.err
    assert result.out.startswith("revoked user dave")
    log_in(monkeypatch, central, tmp_path / "dave.token", "dave")
    refused = run_cli(gb2_jobs.job_status_main, ["--central", central.target])
    assert refused.code != 0
    assert refused.err.startswith("gb2_job_status: error: not authenticated: ")
