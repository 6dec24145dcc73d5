"""The demo's security setup, and the demo itself running secure by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gridpilot.channel import read_token_file
from gridpilot.demo.security import DemoPki, OfflineMinter
from gridpilot.security.ca import certificate_subject
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenVerifier

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_pki_has_a_ca_a_server_and_a_user_certificate(tmp_path: Path) -> None:
    pki = DemoPki.create(tmp_path, "alice")
    assert pki.ca_cert.is_file()
    cert, key = pki.user_cert
    assert certificate_subject(cert.read_bytes()) == "alice"
    assert key.stat().st_mode & 0o777 == 0o600
    assert pki.server_cert[1].stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pki").stat().st_mode & 0o777 == 0o700
    assert pki.tokens_dir.stat().st_mode & 0o777 == 0o700
    config = pki.central_config()
    assert config["security"]["tls_cert"] == str(pki.server_cert[0])
    assert config["security"]["tls_client_ca"] == str(pki.ca_cert)
    assert config["users"] == [{"name": "alice", "subject": "alice", "groups": ["belle_user"]}]
    env = pki.cli_environment("127.0.0.1:1", "127.0.0.1:2")
    assert env["GRIDPILOT_CA"] == str(pki.ca_cert)
    assert env["GRIDPILOT_TOKEN_FILE"] == str(pki.user_token_file)
    assert "GRIDPILOT_INSECURE" not in env


def test_offline_minter_signs_with_centrals_keys(tmp_path: Path) -> None:
    data = tmp_path / "central"
    with pytest.raises(RuntimeError, match="no signing keys"):
        OfflineMinter(data)
    keyset = KeySet.load_or_create(data / "keys")  # what central does at its first start
    minter = OfflineMinter(data)
    verifier = TokenVerifier(keyset, issuer="gridpilot", audience="gridpilot")
    assert verifier.verify(minter.operator_token()).role is Role.ADMIN
    path = minter.director_token("sd-kek", ["LCG.KEK.jp"], tmp_path / "sd-kek.token")
    assert path.stat().st_mode & 0o777 == 0o600
    claims = verifier.verify(read_token_file(path))
    assert (claims.sub, claims.role, claims.sites) == ("sd-kek", Role.SITE_DIRECTOR, ["LCG.KEK.jp"])


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_demo_runs_secure_by_default() -> None:
    # Wide output: rich would wrap the lines checked below at 80 columns.
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "gridpilot", "demo", "--jobs", "8", "--seconds-per-job", "2"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert "(TLS; certificate login on 127.0.0.1:" in out
    assert "with gb2_proxy_init and a client certificate" in out
    assert "demo succeeded" in out
    assert "WITHOUT TLS" not in out + result.stderr
