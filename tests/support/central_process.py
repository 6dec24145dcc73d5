"""Run a real central as a subprocess for integration tests, with TLS and tokens on.

    from tests.support.central_process import running_central

    def test_something(tmp_path: Path) -> None:
        with running_central(tmp_path, {"central": {"stalled_after": 2.0}}) as central:
            channel = central.sync_channel(central.user_token("alice"))
            ...

Central serves TLS with a certificate from a test CA made under tmp_path/pki/ (`ca_path`);
tokens are minted with central's own signing keys (`mint`, `user_token`, `admin_token`,
`director_token`, `registration_token`), exactly as `gridpilot admin token issue --data-dir`
does on a central host. `insecure=True` runs `central serve --insecure` (plaintext);
`login=True` adds the mutual-TLS login port (`login_target`).

The default configuration (see `default_config`) has one site `SITE` with CE `CE` / queue
`QUEUE`, a local SE `LOCAL_SE` (its default output SE) and a failover SE `FAILOVER_SE`, both
file:// directories under tmp_path/se/ (`handle.se_dirs`), and short periods for tests
(heartbeat 0.5 s, stalled after 5 s). `config_overrides` are merged into it: tables merge key
by key, any other value (lists included) replaces the default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import tomli_w

from central.process import CentralProcess
from gridpilot.channel import (
    ClientSecurity,
    StaticToken,
    TokenSource,
    open_channel,
    open_sync_channel,
)
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tls import ClientTls
from gridpilot.security.tokens import TokenIssuer
from tests.support.pki import TestPki

REPO_ROOT = Path(__file__).resolve().parents[2]

SITE = "GP.LOCAL.test"
CE = "localhost"
QUEUE = "default"
LOCAL_SE = "LOCAL-SE"
FAILOVER_SE = "FAILOVER-SE"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def default_config(tmp_path: Path) -> dict[str, Any]:
    se_root = tmp_path / "se"
    return {
        "central": {
            "listen": "127.0.0.1:0",
            "data_dir": str(tmp_path / "central-data"),
            "heartbeat_period": 0.5,
            "stalled_after": 5.0,
            "reschedule_stalled_after": 5.0,
            "stalled_check_period": 0.5,
            "failover_period": 0.5,
            "log_level": "INFO",
        },
        "sites": [
            {
                "name": SITE,
                "ces": [{"name": CE, "queues": [QUEUE]}],
                "local_ses": [LOCAL_SE],
                "default_output_se": LOCAL_SE,
            }
        ],
        "storage_elements": [
            {"name": LOCAL_SE, "site": SITE, "url": f"file://{se_root / 'local'}"},
            {"name": FAILOVER_SE, "site": SITE, "url": f"file://{se_root / 'failover'}"},
        ],
        "failover": {"ses": [FAILOVER_SE]},
    }


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge recursively; every other value replaces the base's."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class CentralHandle:
    """A central subprocess. `target` is "127.0.0.1:PORT"; a restart keeps the port.

    Unless `insecure`, a test PKI is made under tmp_path/pki/ and its server certificate
    fills `[security] tls_cert/tls_key` when the configuration names none."""

    def __init__(self, tmp_path: Path, config: dict[str, Any], *, insecure: bool = False) -> None:
        self.tmp_path = tmp_path
        self.insecure = insecure
        self.pki: TestPki | None = None
        if not insecure:
            self.pki = TestPki(tmp_path / "pki")
            security = dict(config.get("security", {}))
            security.setdefault("tls_cert", str(self.pki.server_cert))
            security.setdefault("tls_key", str(self.pki.server_key))
            config = {**config, "security": security}
        self.config = config
        self.config_path = tmp_path / "central.toml"
        self.port_file = tmp_path / "central.port"
        self.log_path = tmp_path / "central.log"
        self.data_dir = Path(config["central"]["data_dir"])
        self.se_dirs: dict[str, Path] = {
            se["name"]: Path(se["url"].removeprefix("file://"))
            for se in config.get("storage_elements", [])
            if se["url"].startswith("file://")
        }
        self.process = CentralProcess(
            self.config_path,
            self.port_file,
            self.log_path,
            insecure=insecure,
            start_timeout=START_TIMEOUT,
            stop_timeout=STOP_TIMEOUT,
        )
        self._issuer: TokenIssuer | None = None
        self._keyset: KeySet | None = None

    # ---- TLS and tokens ---------------------------------------------------------------------

    @property
    def ca_path(self) -> Path | None:
        """The CA that signed central's certificate; None when insecure."""
        return self.pki.ca_path if self.pki is not None else None

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    def mint(
        self,
        role: str,
        sub: str,
        *,
        group: str = "",
        lifetime: float = 3600,
        **bindings: Any,
    ) -> str:
        """A token signed with central's own keys (role: "user", "site_director", ...)."""
        if self._issuer is None or self._keyset is None:
            security = self.config.get("security", {})
            self._keyset = KeySet.load_or_create(self.keys_dir)
            self._issuer = TokenIssuer(
                self._keyset,
                issuer=security.get("issuer", "gridpilot"),
                audience=security.get("audience", "gridpilot"),
            )
        else:
            self._keyset.reload()  # keys rotated meanwhile (`gridpilot admin keys rotate`)
        token, _ = self._issuer.issue(
            sub=sub, role=Role(role), group=group, lifetime=lifetime, **bindings
        )
        return token

    def user_token(self, user: str, group: str = "belle_user") -> str:
        role = {"belle_production": "production", "belle_admin": "admin"}.get(group, "user")
        return self.mint(role, user, group=group)

    def admin_token(self, name: str = "admin") -> str:
        return self.mint("admin", name, group="belle_admin")

    def director_token(self, sites: list[str], name: str = "director") -> str:
        return self.mint("site_director", name, sites=sites)

    def registration_token(
        self, site: str = SITE, ce: str = CE, queue: str = QUEUE, director: str = "director"
    ) -> str:
        """A single-use pilot registration token, as MintPilotTokens would give."""
        return self.mint(
            "pilot_registration", director, lifetime=600, site=site, ce=ce, queue=queue
        )

    def client_security(
        self,
        token: str | TokenSource | None,
        *,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> ClientSecurity:
        source = StaticToken(token) if isinstance(token, str) else token
        if self.ca_path is None:
            return ClientSecurity.insecure(source)
        return ClientSecurity(tls=ClientTls(ca=self.ca_path, cert=cert, key=key), token=source)

    def channel(self, token: str | TokenSource | None) -> grpc.aio.Channel:
        return open_channel(self.target, self.client_security(token))

    def sync_channel(self, token: str | TokenSource | None) -> grpc.Channel:
        return open_sync_channel(self.target, self.client_security(token))

    @property
    def target(self) -> str:
        return self.process.target

    @property
    def login_target(self) -> str:
        """ "host:port" of the mutual-TLS login port, when central serves one."""
        return self.process.login_target

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def running(self) -> bool:
        return self.process.running

    def log_text(self) -> str:
        return self.process.log_text()

    def start(self) -> None:
        if self.running:
            raise RuntimeError("central is already running")
        for path in self.se_dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(tomli_w.dumps(self.config))
        self.process.start()

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after STOP_TIMEOUT); returns the exit code."""
        return self.process.stop()

    def kill(self) -> int | None:
        """SIGKILL: a crash, no graceful stop."""
        return self.process.kill()

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or kill, with crash=True) and start again on the same port and data."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()


@contextlib.contextmanager
def running_central(
    tmp_path: Path,
    config_overrides: dict[str, Any] | None = None,
    *,
    insecure: bool = False,
    login: bool = False,
) -> Iterator[CentralHandle]:
    """Central over TLS (plaintext with `insecure`), optionally with the login port."""
    config = merge(default_config(tmp_path), config_overrides or {})
    if login:
        pki = TestPki(tmp_path / "pki")
        config = merge(
            config,
            {"security": {"login_listen": "127.0.0.1:0", "tls_client_ca": str(pki.ca_path)}},
        )
    handle = CentralHandle(tmp_path, config, insecure=insecure)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
