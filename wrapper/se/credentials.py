"""What a storage plugin authenticates with and whom it trusts, found the way grid tools find it.

- Bearer token (WebDAV/HTTPS SEs), by the WLCG Bearer Token Discovery order: `BEARER_TOKEN`,
  then the file named by `BEARER_TOKEN_FILE`, then `$XDG_RUNTIME_DIR/bt_u<uid>`, then
  `/tmp/bt_u<uid>`. A token file must not be readable by others.
- Trusted CAs for TLS: `X509_CERT_DIR` (a directory of hashed CA certificates, as on grid
  nodes) and/or `SSL_CERT_FILE` (a PEM bundle); neither set means the system's CAs.

Sites set these in the pilot's environment (`[queues.pilot].environment`); central sets them
for its own SE access (failover, probes) in its environment too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wrapper.se.base import StorageError


@dataclass(frozen=True)
class StorageCredentials:
    bearer_token: str = field(default="", repr=False)
    # Where the token came from, for messages (never the token itself).
    token_source: str = ""
    # Why discovery found a token source but no usable token ("" when fine); raised only
    # when a plugin needs the token, so a broken token never stops file:// or root:// access.
    token_error: str = ""
    ca_file: str = ""
    ca_dir: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> StorageCredentials:
        env = os.environ if environ is None else environ
        try:
            token, source, error = *_discover_token(env), ""
        except StorageError as exc:
            token, source, error = "", "", str(exc)
        return cls(
            bearer_token=token,
            token_source=source,
            token_error=error,
            ca_file=env.get("SSL_CERT_FILE", ""),
            ca_dir=env.get("X509_CERT_DIR", ""),
        )

    def token(self) -> str:
        """The bearer token ("" when there is none); StorageError when discovery failed."""
        if self.token_error:
            raise StorageError(self.token_error)
        return self.bearer_token


# WLCG's last place to look for `bt_u<uid>`.
FALLBACK_TOKEN_DIR = Path("/tmp")


def _discover_token(env: Mapping[str, str]) -> tuple[str, str]:
    if value := env.get("BEARER_TOKEN", "").strip():
        return value, "BEARER_TOKEN"
    candidates: list[Path] = []
    if named := env.get("BEARER_TOKEN_FILE", ""):
        candidates.append(Path(named))
        if not Path(named).is_file():
            raise StorageError(f"BEARER_TOKEN_FILE={named} does not exist")
    uid = os.getuid()
    if runtime := env.get("XDG_RUNTIME_DIR", ""):
        candidates.append(Path(runtime) / f"bt_u{uid}")
    candidates.append(FALLBACK_TOKEN_DIR / f"bt_u{uid}")
    for path in candidates:
        if path.is_file():
            return _read_token_file(path), str(path)
    return "", ""


def _read_token_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StorageError(
                f"bearer token file {path} is readable by others (mode {mode & 0o777:o}); "
                "chmod 600 it"
            )
        token = path.read_text().strip()
    except OSError as exc:
        raise StorageError(f"cannot read bearer token file {path}: {exc}") from exc
    if not token:
        raise StorageError(f"bearer token file {path} is empty")
    return token
