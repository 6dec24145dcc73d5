"""StorageCredentials.from_environment: WLCG bearer-token discovery and the trusted CAs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from wrapper.se import StorageCredentials, StorageError
from wrapper.se import credentials as credentials_module

TOKEN = "eyJhbGciOiJFUzI1NiJ9.gridpilot-test-token.c2lnbmF0dXJl"


def token_file(path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment whose $XDG_RUNTIME_DIR and /tmp fallback are empty (nothing discovered
    there, whatever tokens this machine holds)."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    fallback = tmp_path / "tmp"
    fallback.mkdir()
    monkeypatch.setattr(credentials_module, "FALLBACK_TOKEN_DIR", fallback)
    return {"XDG_RUNTIME_DIR": str(runtime)}


def test_bearer_token_variable_comes_first(environ: dict[str, str], tmp_path: Path) -> None:
    environ["BEARER_TOKEN"] = f"  {TOKEN}\n"
    environ["BEARER_TOKEN_FILE"] = str(token_file(tmp_path / "t", "other"))
    credentials = StorageCredentials.from_environment(environ)
    assert credentials.token() == TOKEN
    assert credentials.token_source == "BEARER_TOKEN"


def test_bearer_token_file(environ: dict[str, str], tmp_path: Path) -> None:
    path = token_file(tmp_path / "token")
    environ["BEARER_TOKEN_FILE"] = str(path)
    credentials = StorageCredentials.from_environment(environ)
    assert credentials.token() == TOKEN
    assert credentials.token_source == str(path)
    assert TOKEN not in repr(credentials)


def test_token_file_readable_by_others_is_refused(environ: dict[str, str], tmp_path: Path) -> None:
    path = token_file(tmp_path / "token", mode=0o644)
    environ["BEARER_TOKEN_FILE"] = str(path)
    # Discovery itself never fails (file:// and root:// need no token) ...
    credentials = StorageCredentials.from_environment(environ)
    assert credentials.bearer_token == ""
    # ... the plugin that asks for the token gets the reason.
    with pytest.raises(StorageError) as info:
        credentials.token()
    message = str(info.value)
    assert str(path) in message
    assert "readable by others" in message
    assert "644" in message
    assert "chmod 600" in message
    assert TOKEN not in message


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda path: None, "does not exist"),
        (lambda path: token_file(path, "  \n"), "is empty"),
    ],
)
def test_unusable_token_file(
    environ: dict[str, str], tmp_path: Path, setup: Callable[[Path], object], reason: str
) -> None:
    path = tmp_path / "token"
    setup(path)
    environ["BEARER_TOKEN_FILE"] = str(path)
    with pytest.raises(StorageError, match=reason):
        StorageCredentials.from_environment(environ).token()


def test_token_in_the_runtime_directory(environ: dict[str, str]) -> None:
    path = token_file(Path(environ["XDG_RUNTIME_DIR"]) / f"bt_u{os.getuid()}")
    credentials = StorageCredentials.from_environment(environ)
    assert credentials.token() == TOKEN
    assert credentials.token_source == str(path)


def test_token_in_the_tmp_fallback(environ: dict[str, str]) -> None:
    path = token_file(credentials_module.FALLBACK_TOKEN_DIR / f"bt_u{os.getuid()}")
    credentials = StorageCredentials.from_environment(environ)
    assert credentials.token() == TOKEN
    assert credentials.token_source == str(path)


def test_no_token_anywhere(environ: dict[str, str]) -> None:
    credentials = StorageCredentials.from_environment(environ)
    assert (credentials.token(), credentials.token_source) == ("", "")


def test_trusted_cas(environ: dict[str, str]) -> None:
    environ |= {"SSL_CERT_FILE": "/etc/ca/bundle.pem", "X509_CERT_DIR": "/etc/grid-security/certs"}
    credentials = StorageCredentials.from_environment(environ)
    assert (credentials.ca_file, credentials.ca_dir) == (
        "/etc/ca/bundle.pem",
        "/etc/grid-security/certs",
    )
    assert StorageCredentials.from_environment({}).ca_file == ""
