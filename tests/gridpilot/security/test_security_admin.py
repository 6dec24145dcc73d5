"""`gridpilot admin ca|cert|keys|token`: the offline commands, through the umbrella's main()."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridpilot.cli.main import main
from gridpilot.security.ca import certificate_subject
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import Role, TokenVerifier


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["admin", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_and_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca_dir = tmp_path / "ca"
    code, out, _ = _run(capsys, "ca", "init", "--dir", str(ca_dir), "--cn", "Belle II CA")
    assert code == 0
    assert "CA created" in out
    assert _mode(ca_dir / "ca.key") == 0o600
    assert certificate_subject((ca_dir / "ca.pem").read_bytes()) == "Belle II CA"
    code, _, err = _run(capsys, "ca", "init", "--dir", str(ca_dir))
    assert code == 1
    assert err.startswith("gridpilot admin ca init: error: a CA already exists")
    assert err.count("\n") == 1

    out_dir = tmp_path / "certs"
    code, out, _ = _run(
        capsys, "cert", "issue", "--ca-dir", str(ca_dir), "--out", str(out_dir),
        "--host", "central.example.org", "--host", "127.0.0.1", "--name", "central",
    )  # fmt: skip
    assert code == 0
    assert str(out_dir / "central.pem") in out
    assert _mode(out_dir / "central.key") == 0o600
    assert certificate_subject((out_dir / "central.pem").read_bytes()) == "central.example.org"

    code, _, _ = _run(
        capsys, "cert", "issue", "--ca-dir", str(ca_dir), "--out", str(out_dir),
        "--client", "director-kek",
    )  # fmt: skip
    assert code == 0
    assert certificate_subject((out_dir / "director-kek.pem").read_bytes()) == "director-kek"
    assert _mode(out_dir / "director-kek.key") == 0o600

    code, _, err = _run(capsys, "cert", "issue", "--ca-dir", str(ca_dir), "--out", str(out_dir))
    assert code == 1
    assert "either --host" in err
    code, _, err = _run(
        capsys, "cert", "issue", "--ca-dir", str(tmp_path / "nope"), "--out", str(out_dir),
        "--client", "x",
    )  # fmt: skip
    assert code == 1
    assert "no CA in" in err


def test_keys_show_rotate_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    code, _, err = _run(capsys, "keys", "show", "--data-dir", data)
    assert code == 1
    assert "no signing keys" in err
    assert _run(capsys, "keys", "rotate", "--data-dir", data)[0] == 0
    assert _mode(tmp_path / "data" / "keys" / "signing-keys.json") == 0o600
    assert _run(capsys, "keys", "rotate", "--data-dir", data)[0] == 0
    code, out, _ = _run(capsys, "keys", "show", "--data-dir", data, "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 3  # the first key (created on demand) and two rotations
    assert [row["current"] for row in rows] == [False, False, True]
    assert rows[0]["retired"] is not None
    assert rows[2]["retired"] is None
    code, out, _ = _run(capsys, "keys", "show", "--data-dir", data)
    assert f"{rows[2]['kid']}" in out
    assert "(current)" in out

    code, out, _ = _run(capsys, "keys", "prune", "--data-dir", data, "--max-token-lifetime", "3600")
    assert (code, out) == (0, "pruned 0 key(s)\n")
    # A key retired long ago goes; the current one stays.
    old = tmp_path / "old"
    keyset = KeySet.load_or_create(old / "keys", now=time.time() - 20_000)
    retired = keyset.current().kid
    current = keyset.rotate(time.time() - 10_000).kid
    code, out, _ = _run(
        capsys, "keys", "prune", "--data-dir", str(old), "--max-token-lifetime", "3600"
    )
    assert (code, out) == (0, f"pruned 1 key(s): {retired}\n")
    assert [k.kid for k in KeySet.load_or_create(old / "keys").signing_keys()] == [current]


def test_token_issue_verifies_with_the_same_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    out_file = tmp_path / "admin.token"
    code, out, _ = _run(
        capsys, "token", "issue", "--data-dir", str(data), "--sub", "root",
        "--role", "admin", "--group", "belle_admin", "--lifetime", "3600",
        "--out", str(out_file),
    )  # fmt: skip
    assert code == 0
    assert "admin token for root" in out
    assert _mode(out_file) == 0o600
    verifier = TokenVerifier(
        KeySet.load_or_create(data / "keys"), issuer="gridpilot", audience="gridpilot"
    )
    claims = verifier.verify(out_file.read_text().strip())
    assert (claims.sub, claims.role, claims.group) == ("root", Role.ADMIN, "belle_admin")
    assert claims.exp - claims.iat == 3600

    code, out, err = _run(
        capsys, "token", "issue", "--data-dir", str(data), "--sub", "director-kek",
        "--role", "site_director", "--sites", "KEK,DESY",
    )  # fmt: skip
    assert code == 0
    assert "site_director token for director-kek" in err
    director = verifier.verify(out.strip())
    assert director.sites == ["KEK", "DESY"]

    code, out, _ = _run(
        capsys, "token", "issue", "--data-dir", str(data), "--sub", "x", "--role", "user",
        "--issuer", "https://central.example.org", "--audience", "other",
    )  # fmt: skip
    assert code == 0
    custom = TokenVerifier(
        KeySet.load_or_create(data / "keys"),
        issuer="https://central.example.org",
        audience="other",
    )
    assert custom.verify(out.strip()).sub == "x"

    code, _, err = _run(
        capsys, "token", "issue", "--data-dir", str(data), "--sub", "d", "--role", "site_director"
    )
    assert code == 1
    assert "needs sites" in err
    code, _, err = _run(
        capsys, "token", "issue", "--data-dir", str(data), "--sub", "d", "--role", "emperor"
    )
    assert code == 2
    assert "invalid choice" in err


def test_offline_commands_do_not_load_grpc(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from gridpilot.cli.main import main\n"
        f"rc = main(['admin', 'keys', 'rotate', '--data-dir', {str(tmp_path)!r}])\n"
        "print('LOADED', 'grpc' in sys.modules, rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().endswith("LOADED False 0")
