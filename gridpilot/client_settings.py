"""What the CLI knows before it connects to central: where central is, TLS, the user's token.

Settings, by precedence (command-line option, then environment, then the key in
`~/.config/gridpilot/client.toml`; `$XDG_CONFIG_HOME` is honoured):

    central   --central HOST:PORT   GRIDPILOT_CENTRAL   central = "HOST:PORT"
    login     --login HOST:PORT     GRIDPILOT_LOGIN     login = "HOST:PORT"  (mutual-TLS login port)
    CA        -                     GRIDPILOT_CA        ca = "/path/ca.pem"  (verifies central)
    user cert -                     GRIDPILOT_CERT/KEY  cert = "...", key = "..." (gb2_proxy_init)
    token     --token-file FILE     GRIDPILOT_TOKEN_FILE  (default ~/.config/gridpilot/token)
    plaintext -                     GRIDPILOT_INSECURE=1  insecure = true  (warns on every use)

Who the caller is comes from the token (`gb2_proxy_init` stores it): central verifies it on
every call; the client only decodes it to say who you are and when it expires.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from gridpilot.channel import ClientSecurity, StaticToken, TokenFileError, read_token_file
from gridpilot.client_errors import ClientError, TokenExpiredError, TokenMissingError
from gridpilot.security.tls import ClientTls

ENV_CENTRAL = "GRIDPILOT_CENTRAL"
ENV_LOGIN = "GRIDPILOT_LOGIN"
ENV_CA = "GRIDPILOT_CA"
ENV_CERT = "GRIDPILOT_CERT"
ENV_KEY = "GRIDPILOT_KEY"
ENV_TOKEN_FILE = "GRIDPILOT_TOKEN_FILE"
ENV_INSECURE = "GRIDPILOT_INSECURE"
ENV_TIMEOUT = "GRIDPILOT_RPC_TIMEOUT"
# Interactive commands should fail fast rather than hang on a dead central.
DEFAULT_TIMEOUT = 20.0
LOGIN_HINT = "run gb2_proxy_init -g <group>"


# ---- settings ----------------------------------------------------------------------------------


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gridpilot"


def config_path() -> Path:
    return config_dir() / "client.toml"


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(f"cannot read client config {path}: {exc}") from exc


def _config_value(key: str) -> tuple[str | None, str]:
    """A string setting from client.toml and where it came from."""
    path = config_path()
    value = _read_config_file(path).get(key)
    if value is None:
        return None, str(path)
    if not isinstance(value, str) or not value.strip():
        raise ClientError(f"key {key!r} in {path} must be a non-empty string")
    return value.strip(), str(path)


def _check_target(target: str, origin: str) -> str:
    target = target.strip()
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClientError(f"central address {target!r} from {origin} is not HOST:PORT")
    return target


def _address(cli_value: str | None, option: str, env: str, key: str) -> str | None:
    if cli_value:
        return _check_target(cli_value, option)
    env_value = os.environ.get(env, "").strip()
    if env_value:
        return _check_target(env_value, env)
    value, origin = _config_value(key)
    return _check_target(value, origin) if value else None


def resolve_central(cli_value: str | None = None) -> str:
    """The central address, by precedence: option, environment, client config file."""
    target = _address(cli_value, "--central", ENV_CENTRAL, "central")
    if target is None:
        raise ClientError(
            f"no central address: use --central HOST:PORT, set {ENV_CENTRAL}, "
            f'or put central = "HOST:PORT" in {config_path()}'
        )
    return target


def resolve_login(cli_value: str | None = None) -> str:
    """Central's login port (mutual TLS with the user certificate)."""
    target = _address(cli_value, "--login", ENV_LOGIN, "login")
    if target is None:
        raise ClientError(
            f"no login address for certificate login: use --login HOST:PORT, set {ENV_LOGIN}, "
            f'or put login = "HOST:PORT" in {config_path()}'
        )
    return target


def _path_setting(env: str, key: str) -> Path | None:
    value = os.environ.get(env, "").strip()
    if value:
        return Path(value).expanduser()
    from_file, _origin = _config_value(key)
    return Path(from_file).expanduser() if from_file else None


def resolve_insecure() -> bool:
    raw = os.environ.get(ENV_INSECURE, "").strip().lower()
    if raw:
        if raw in ("1", "true", "yes"):
            return True
        if raw in ("0", "false", "no"):
            return False
        raise ClientError(f"{ENV_INSECURE}={raw!r}: use 1 or 0")
    path = config_path()
    value = _read_config_file(path).get("insecure", False)
    if not isinstance(value, bool):
        raise ClientError(f"key 'insecure' in {path} must be true or false")
    return value


def resolve_ca() -> Path:
    ca = _path_setting(ENV_CA, "ca")
    if ca is None:
        raise ClientError(
            f"no CA certificate to verify central with: set {ENV_CA} or put "
            f'ca = "/path/ca.pem" in {config_path()}'
        )
    if not ca.is_file():
        raise ClientError(f"CA certificate {ca} does not exist")
    return ca


def resolve_user_cert() -> tuple[Path, Path] | None:
    """The user certificate and key for login, when configured (or in ~/.globus)."""
    cert = _path_setting(ENV_CERT, "cert")
    key = _path_setting(ENV_KEY, "key")
    if cert is None and key is None:
        globus = Path.home() / ".globus"
        cert, key = globus / "usercert.pem", globus / "userkey.pem"
        return (cert, key) if cert.is_file() and key.is_file() else None
    if cert is None or key is None:
        raise ClientError(f"a user certificate needs both {ENV_CERT} and {ENV_KEY} (cert, key)")
    for path in (cert, key):
        if not path.is_file():
            raise ClientError(f"user certificate file {path} does not exist")
    return cert, key


def token_file_path(cli_value: Path | None = None) -> Path:
    if cli_value is not None:
        return cli_value.expanduser()
    env_value = os.environ.get(ENV_TOKEN_FILE, "").strip()
    if env_value:
        return Path(env_value).expanduser()
    return config_dir() / "token"


def resolve_timeout() -> float:
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError as exc:
        raise ClientError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds") from exc
    if value <= 0:
        raise ClientError(f"{ENV_TIMEOUT} must be positive, got {raw!r}")
    return value


def transport(cert: tuple[Path, Path] | None = None) -> ClientTls | None:
    """TLS towards central (None when plaintext was asked for)."""
    if resolve_insecure():
        return None
    ca = resolve_ca()
    if cert is None:
        return ClientTls(ca=ca)
    return ClientTls(ca=ca, cert=cert[0], key=cert[1])


# ---- the token ---------------------------------------------------------------------------------


def format_epoch(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class TokenInfo:
    """What a token says about its holder, decoded WITHOUT verification (central verifies)."""

    subject: str
    group: str
    role: str
    vo: str
    issuer: str
    jti: str
    expires: float
    sites: tuple[str, ...] = ()

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

    def seconds_left(self, now: float | None = None) -> float:
        return max(0.0, self.expires - (time.time() if now is None else now))


def decode_token(token: str) -> TokenInfo:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ClientError(f"the stored token is not a valid token ({exc}): {LOGIN_HINT}") from exc
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise ClientError(f"the stored token has no expiry: {LOGIN_HINT}")
    sites = claims.get("sites") or ()
    return TokenInfo(
        subject=str(claims.get("sub", "")),
        group=str(claims.get("group", "")),
        role=str(claims.get("role", "")),
        vo=str(claims.get("vo", "")),
        issuer=str(claims.get("iss", "")),
        jti=str(claims.get("jti", "")),
        expires=float(exp),
        sites=tuple(str(s) for s in sites) if isinstance(sites, list) else (),
    )


def load_token(path: Path, *, allow_expired: bool = False) -> tuple[str, TokenInfo]:
    """The stored token and what it says; one clear error when it is missing or expired."""
    if not path.exists():
        raise TokenMissingError(f"no token: {LOGIN_HINT} (no token file {path})")
    try:
        token = read_token_file(path)
    except TokenFileError as exc:
        raise ClientError(str(exc)) from exc
    info = decode_token(token)
    if info.expired() and not allow_expired:
        group = f" -g {info.group}" if info.group else ""
        raise TokenExpiredError(
            f"your token expired at {format_epoch(info.expires)}: run gb2_proxy_init{group}"
        )
    return token, info


@dataclass(frozen=True)
class ClientSettings:
    """Where central is, how to reach it and the caller's token."""

    central: str
    token: str
    tls: ClientTls | None
    timeout: float = DEFAULT_TIMEOUT
    # From the token (unverified): who the commands act as by default.
    user: str = ""
    group: str = ""

    @classmethod
    def resolve(
        cls, central: str | None = None, *, token_file: Path | None = None
    ) -> ClientSettings:
        target = resolve_central(central)
        token, info = load_token(token_file_path(token_file))
        return cls(
            central=target,
            token=token,
            tls=transport(),
            timeout=resolve_timeout(),
            user=info.subject,
            group=info.group,
        )

    def security(self) -> ClientSecurity:
        return ClientSecurity(self.tls, StaticToken(self.token) if self.token else None)
