"""The demo's security, set up the way an operator would: a CA, certificates and tokens.

Everything lives under `<demo root>/pki` and `<demo root>/tokens` (both 0700):

- a CA (`gridpilot.security.ca`), central's server certificate for 127.0.0.1/localhost, and a
  client certificate for the demo user, who logs in with it (`gb2_proxy_init`, mutual TLS on
  central's login port) exactly as a physicist would;
- the site directors' site_director tokens and the demo's own operator (admin) token, minted
  offline with the signing keys in central's data directory, as
  `gridpilot admin token issue --data-dir` does on a central host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridpilot.channel import write_token_file
from gridpilot.security.ca import init_ca, issue_client_cert, issue_server_cert
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer

ISSUER = "gridpilot"
AUDIENCE = "gridpilot"
USER_GROUP = "belle_user"
OPERATOR = "demo-operator"
OPERATOR_GROUP = "belle_admin"
# Long enough for any demo run; short enough to be harmless if the directory is kept.
SERVICE_TOKEN_LIFETIME = 6 * 3600.0


@dataclass(frozen=True)
class DemoPki:
    root: Path
    user: str
    # Central's server certificate and key; the demo user's client certificate and key.
    server_cert: tuple[Path, Path]
    user_cert: tuple[Path, Path]

    @property
    def ca_dir(self) -> Path:
        return self.root / "pki" / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def tokens_dir(self) -> Path:
        return self.root / "tokens"

    @property
    def user_token_file(self) -> Path:
        return self.tokens_dir / "user.token"

    def director_token_file(self, name: str) -> Path:
        return self.tokens_dir / f"{name}.token"

    @classmethod
    def create(cls, root: Path, user: str) -> DemoPki:
        for directory in (root / "pki", root / "tokens"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        ca_dir = root / "pki" / "ca"
        init_ca(ca_dir, common_name="gridpilot demo CA")
        server_cert = issue_server_cert(ca_dir, root / "pki" / "server", ["127.0.0.1", "localhost"])
        user_cert = issue_client_cert(ca_dir, root / "pki" / "user", user)
        return cls(root, user, server_cert, user_cert)

    def central_config(self) -> dict[str, Any]:
        """The [security] and [[users]] parts of central's configuration."""
        return {
            "security": {
                "tls_cert": str(self.server_cert[0]),
                "tls_key": str(self.server_cert[1]),
                "tls_client_ca": str(self.ca_cert),
                "login_listen": "127.0.0.1:0",
                "issuer": ISSUER,
                "audience": AUDIENCE,
            },
            "users": [{"name": self.user, "subject": self.user, "groups": [USER_GROUP]}],
        }

    def cli_environment(self, central: str, login: str) -> dict[str, str]:
        """What a user's shell would have set (or client.toml would say)."""
        cert, key = self.user_cert
        return {
            "GRIDPILOT_CENTRAL": central,
            "GRIDPILOT_LOGIN": login,
            "GRIDPILOT_CA": str(self.ca_cert),
            "GRIDPILOT_CERT": str(cert),
            "GRIDPILOT_KEY": str(key),
            "GRIDPILOT_TOKEN_FILE": str(self.user_token_file),
        }


class OfflineMinter:
    """Tokens signed with central's own key set (central must have created it: started once)."""

    def __init__(self, central_data: Path) -> None:
        keys = central_data / "keys"
        if not (keys / "signing-keys.json").is_file():
            raise RuntimeError(f"central has no signing keys in {keys} yet")
        self._issuer = TokenIssuer(KeySet.load_or_create(keys), issuer=ISSUER, audience=AUDIENCE)

    def operator_token(self) -> str:
        token, _claims = self._issuer.issue(
            sub=OPERATOR, role=Role.ADMIN, group=OPERATOR_GROUP, lifetime=SERVICE_TOKEN_LIFETIME
        )
        return token

    def director_token(self, name: str, sites: list[str], path: Path) -> Path:
        token, _claims = self._issuer.issue(
            sub=name, role=Role.SITE_DIRECTOR, sites=sites, lifetime=SERVICE_TOKEN_LIFETIME
        )
        write_token_file(path, token)
        return path
