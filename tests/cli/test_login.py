"""gb2_proxy_init / gb2_login / gb2_proxy_info against a real central over TLS: certificate
login on the mutual-TLS port, IAM tokens, renewal, and what the user sees when it goes wrong."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gridpilot.channel import write_token_file
from gridpilot.cli import gb2_jobs, proxy
from gridpilot.cli import main as umbrella
from gridpilot.client_settings import decode_token
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer
from tests.cli.conftest import CliRunner, log_in
from tests.support.central_process import CentralHandle, running_central

pytestmark = pytest.mark.e2e

IAM = "https://belle-iam.example.org/"
IAM_AUDIENCE = "gridpilot-central"


class Iam:
    """The collaboration's IAM: its signing key, its JWKS file, the tokens it signs."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwks_path = directory / "iam-jwks.json"
        jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwks_path.write_text(json.dumps({"keys": [{**jwk, "kid": "iam-1"}]}))

    def token(self, user: str, groups: list[str]) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": IAM,
            "sub": f"uuid-of-{user}",
            "aud": IAM_AUDIENCE,
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "jti": f"iam-{user}-{now}",
            "preferred_username": user,
            "wlcg.groups": groups,
        }
        return jwt.encode(payload, self.key, algorithm="ES256", headers={"kid": "iam-1"})


def _expired_token(central: CentralHandle) -> str:
    """A token central signed two hours ago, valid for one minute."""
    issuer = TokenIssuer(
        KeySet.load_or_create(central.keys_dir),
        issuer="gridpilot",
        audience="gridpilot",
        clock=lambda: time.time() - 7200,
    )
    token, _claims = issuer.issue(sub="alice", role=Role.USER, group="belle_user", lifetime=60)
    return token


@pytest.fixture(scope="module")
def iam(tmp_path_factory: pytest.TempPathFactory) -> Iam:
    return Iam(tmp_path_factory.mktemp("iam"))


@pytest.fixture(scope="module")
def login_central(iam: Iam, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    overrides = {
        "users": [
            {"name": "alice", "groups": ["belle_user"]},
            {"name": "bob", "subject": "Bob Example", "groups": ["belle_user", "belle_production"]},
        ],
        "security": {
            "external_issuers": [
                {
                    "issuer": IAM,
                    "jwks_file": str(iam.jwks_path),
                    "audience": IAM_AUDIENCE,
                    "group_map": {"/belle/users": "belle_user"},
                }
            ]
        },
    }
    with running_central(tmp_path_factory.mktemp("login"), overrides, login=True) as handle:
        yield handle


@pytest.fixture
def user_env(login_central: CentralHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A user's settings before login: central, login port and CA known; no token yet."""
    monkeypatch.setenv("GRIDPILOT_CENTRAL", login_central.target)
    monkeypatch.setenv("GRIDPILOT_LOGIN", login_central.login_target)
    monkeypatch.setenv("GRIDPILOT_CA", str(login_central.ca_path))
    token_file = tmp_path / "cfg" / "token"
    monkeypatch.setenv("GRIDPILOT_TOKEN_FILE", str(token_file))
    return token_file


def _use_cert(monkeypatch: pytest.MonkeyPatch, cert: tuple[Path, Path]) -> None:
    monkeypatch.setenv("GRIDPILOT_CERT", str(cert[0]))
    monkeypatch.setenv("GRIDPILOT_KEY", str(cert[1]))


def test_certificate_login_stores_a_private_token(
    login_central: CentralHandle,
    user_env: Path,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert login_central.pki is not None
    _use_cert(monkeypatch, login_central.pki.client_cert("alice"))
    result = run_cli(proxy.proxy_init_main, ["-g", "belle_user", "--lifetime", "2"])
    assert result.code == 0, result.err
    assert "Token for alice (group belle_user, role user)" in result.out
    assert f"stored in {user_env}" in result.out
    assert user_env.stat().st_mode & 0o777 == 0o600
    info = decode_token(user_env.read_text().strip())
    assert (info.subject, info.group, info.role) == ("alice", "belle_user", "user")
    assert 1.9 * 3600 < info.seconds_left() <= 2 * 3600
    # Every command now uses it.
    status = run_cli(gb2_jobs.job_status_main, ["--json"])
    assert status.code == 0, status.err
    assert json.loads(status.out) == []


def test_login_alias_and_default_group(
    login_central: CentralHandle,
    user_env: Path,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert login_central.pki is not None
    # The certificate's CN is bob's configured subject, not his user name.
    _use_cert(monkeypatch, login_central.pki.client_cert("Bob Example"))
    result = run_cli(proxy.login_main, [])
    assert result.code == 0, result.err
    info = decode_token(user_env.read_text().strip())
    assert (info.subject, info.group) == ("bob", "belle_user")
    production = run_cli(proxy.login_main, ["-g", "belle_production"])
    assert production.code == 0, production.err
    assert decode_token(user_env.read_text().strip()).role == "production"


def test_unknown_certificate_is_refused_and_nothing_stored(
    login_central: CentralHandle,
    user_env: Path,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert login_central.pki is not None
    _use_cert(monkeypatch, login_central.pki.client_cert("mallory"))
    result = run_cli(proxy.proxy_init_main, ["-g", "belle_user"])
    assert result.code != 0
    assert result.err.startswith("gb2_proxy_init: error: permission denied: ")
    assert "'mallory' is not a configured user" in result.err
    assert result.err.count("\n") == 1
    assert not user_env.exists()


def test_certificate_of_another_ca_fails_the_handshake(
    login_central: CentralHandle,
    user_env: Path,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert login_central.pki is not None
    _use_cert(monkeypatch, login_central.pki.other_client_cert("alice"))
    result = run_cli(proxy.proxy_init_main, ["-g", "belle_user"])
    assert result.code != 0
    assert result.err.count("\n") == 1
    assert not user_env.exists()


def test_group_not_allowed_is_refused(
    login_central: CentralHandle,
    user_env: Path,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert login_central.pki is not None
    _use_cert(monkeypatch, login_central.pki.client_cert("alice"))
    result = run_cli(proxy.proxy_init_main, ["-g", "belle_admin"])
    assert result.code != 0
    assert result.err == (
        "gb2_proxy_init: error: permission denied: user alice may not act in group "
        "'belle_admin' (groups: belle_user)\n"
    )
    assert not user_env.exists()


def test_no_credential_says_what_to_configure(user_env: Path, run_cli: CliRunner) -> None:
    result = run_cli(proxy.proxy_init_main, ["-g", "belle_user"])
    assert result.code != 0
    assert "no credential to log in with: configure your user certificate" in result.err
    assert "--iam-token FILE" in result.err


def test_iam_token_login(iam: Iam, user_env: Path, run_cli: CliRunner, tmp_path: Path) -> None:
    iam_file = tmp_path / "iam.token"
    write_token_file(iam_file, iam.token("carol", ["/belle", "/belle/users"]))
    result = run_cli(proxy.proxy_init_main, ["--iam-token", str(iam_file)])
    assert result.code == 0, result.err
    assert "obtained with your IAM token" in result.out
    info = decode_token(user_env.read_text().strip())
    assert (info.subject, info.group, info.issuer) == ("carol", "belle_user", "gridpilot")


def test_renewal_with_a_valid_token(
    login_central: CentralHandle, user_env: Path, run_cli: CliRunner
) -> None:
    write_token_file(user_env, login_central.user_token("alice"))
    old = decode_token(user_env.read_text().strip())
    result = run_cli(proxy.proxy_init_main, [])
    assert result.code == 0, result.err
    assert "obtained with your current token (renewal)" in result.out
    new = decode_token(user_env.read_text().strip())
    assert new.subject == "alice"
    assert new.jti != old.jti


def test_proxy_info_shows_identity_and_time_left(
    login_central: CentralHandle, user_env: Path, run_cli: CliRunner
) -> None:
    write_token_file(user_env, login_central.user_token("alice"))
    result = run_cli(proxy.proxy_info_main, [])
    assert result.code == 0, result.err
    lines = {
        key.strip(): value
        for key, value in (line.split(" : ", 1) for line in result.out.splitlines())
    }
    assert lines["subject"] == "alice"
    assert lines["group"] == "belle_user"
    assert lines["role"] == "user"
    hours, minutes, _ = lines["timeleft"].split(":")
    assert (int(hours), int(minutes)) in ((0, 59), (1, 0))
    assert lines["central"] == f"accepted by central at {login_central.target}"
    as_json = json.loads(run_cli(proxy.proxy_info_main, ["--json"]).out)
    assert as_json["subject"] == "alice"
    assert 3500 < as_json["seconds_left"] <= 3600
    assert as_json["expired"] is False


def test_proxy_info_without_central_decodes_locally(
    login_central: CentralHandle,
    user_env: Path,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_token_file(user_env, login_central.user_token("alice"))
    monkeypatch.delenv("GRIDPILOT_CENTRAL")
    result = run_cli(proxy.proxy_info_main, [])
    assert result.code == 0, result.err
    assert "subject   : alice" in result.out
    assert "central   : not checked (no central address" in result.out


def test_proxy_info_expired_and_missing(
    login_central: CentralHandle, user_env: Path, run_cli: CliRunner
) -> None:
    missing = run_cli(proxy.proxy_info_main, [])
    assert missing.code != 0
    assert missing.err.startswith("gb2_proxy_info: error: no token: run gb2_proxy_init -g <group>")
    write_token_file(user_env, _expired_token(login_central))
    expired = run_cli(proxy.proxy_info_main, [])
    assert expired.code != 0
    assert "timeleft  : expired" in expired.out
    assert expired.err.startswith("gb2_proxy_info: error: your token expired at ")
    assert expired.err.endswith(": run gb2_proxy_init -g belle_user\n")


def test_world_readable_token_file_is_refused(
    login_central: CentralHandle, user_env: Path, run_cli: CliRunner
) -> None:
    write_token_file(user_env, login_central.user_token("alice"))
    user_env.chmod(0o644)
    for main in (proxy.proxy_info_main, gb2_jobs.job_status_main):
        result = run_cli(main, [])
        assert result.code != 0
        assert "is readable by other users (mode 0644): refusing to use it" in result.err
        assert result.err.count("\n") == 1


def test_revoked_token_is_refused_everywhere(
    login_central: CentralHandle,
    user_env: Path,
    run_cli: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    write_token_file(user_env, login_central.user_token("alice"))
    jti = decode_token(user_env.read_text().strip()).jti
    admin_file = tmp_path / "admin.token"
    write_token_file(admin_file, login_central.admin_token())
    admin = ["--token-file", str(admin_file)]
    revoked = run_cli(
        umbrella.main, ["admin", "revoke", "--jti", jti, "--reason", "laptop stolen", *admin]
    )
    assert revoked.code == 0, revoked.err
    assert f"revoked jti {jti}" in revoked.out
    info = run_cli(proxy.proxy_info_main, [])
    assert info.code != 0
    assert f"central   : REFUSED by central at {login_central.target}" in info.out
    assert "not authenticated" in info.err
    status = run_cli(gb2_jobs.job_status_main, [])
    assert status.code != 0
    assert status.err.startswith("gb2_job_status: error: not authenticated: ")
    assert "(run gb2_proxy_init -g <group>)" in status.err
    listed = run_cli(umbrella.main, ["admin", "revocations", "--json", *admin])
    assert {"kind": "jti", "value": jti, "reason": "laptop stolen"}.items() <= next(
        r for r in json.loads(listed.out) if r["value"] == jti
    ).items()
    log_in(monkeypatch, login_central, tmp_path / "fresh.token", "alice")
    assert run_cli(gb2_jobs.job_status_main, []).code == 0
