"""A throw-away PKI for tests: a CA, a server certificate for localhost, client certificates.

    pki = TestPki(tmp_path / "pki")
    pki.ca_path, pki.server_cert, pki.server_key      # central's [security] tls_cert/tls_key
    cert, key = pki.client_cert("alice")               # mutual TLS as alice
    pki.other_ca                                       # a CA nobody trusts (handshake tests)

Built with gridpilot.security.ca, exactly what `gridpilot admin ca init` / `cert issue` do.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from gridpilot.security.ca import init_ca, issue_client_cert, issue_server_cert

SERVER_HOSTS = ["localhost", "127.0.0.1"]


class TestPki:
    # Not a test class, whatever its name says.
    __test__ = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_dir = directory / "ca"
        if (self.ca_dir / "ca.pem").exists():
            self.ca_path = self.ca_dir / "ca.pem"
        else:
            self.ca_path = init_ca(self.ca_dir, common_name="gridpilot test CA")
        server_dir = directory / "server"
        self.server_cert = server_dir / "server.pem"
        self.server_key = server_dir / "server.key"
        if not self.server_cert.exists():
            self.server_cert, self.server_key = issue_server_cert(
                self.ca_dir, server_dir, SERVER_HOSTS
            )

    def client_cert(self, common_name: str) -> tuple[Path, Path]:
        """A client certificate (and its key) with this CN, signed by the test CA."""
        return issue_client_cert(self.ca_dir, self.directory / "clients", common_name)

    @cached_property
    def other_ca(self) -> Path:
        """ca.pem of a second CA that signed nothing central uses."""
        return init_ca(self.directory / "other-ca", common_name="untrusted test CA")

    def other_client_cert(self, common_name: str) -> tuple[Path, Path]:
        """A client certificate signed by `other_ca` (refused by central's login port)."""
        self.other_ca  # noqa: B018 - creates the CA on first use
        return issue_client_cert(
            self.directory / "other-ca", self.directory / "other-clients", common_name
        )
