"""gridpilot's security library: a small CA, TLS credentials, signing keys, signed tokens.

    from gridpilot.security.ca import init_ca, issue_server_cert, issue_client_cert
    from gridpilot.security.tls import ServerTls, ClientTls, peer_common_name
    from gridpilot.security.keys import KeySet
    from gridpilot.security.tokens import TokenIssuer, TokenVerifier, Role, Claims, TokenError

The TLS module (which loads grpc) is imported only when one of its names is used, so the
offline admin commands (CA, keys, tokens) stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gridpilot.security.ca import (
    certificate_subject,
    init_ca,
    issue_client_cert,
    issue_server_cert,
)
from gridpilot.security.claims import Claims, Role, TokenError, TokenErrorReason
from gridpilot.security.external import ExternalIssuer
from gridpilot.security.keys import KeySet, SigningKey
from gridpilot.security.tokens import TokenIssuer, TokenVerifier

if TYPE_CHECKING:
    from gridpilot.security.tls import ClientTls, ServerTls, peer_common_name

__all__ = [
    "Claims",
    "ClientTls",
    "ExternalIssuer",
    "KeySet",
    "Role",
    "ServerTls",
    "SigningKey",
    "TokenError",
    "TokenErrorReason",
    "TokenIssuer",
    "TokenVerifier",
    "certificate_subject",
    "init_ca",
    "issue_client_cert",
    "issue_server_cert",
    "peer_common_name",
]

_TLS_NAMES = frozenset({"ClientTls", "ServerTls", "peer_common_name"})


def __getattr__(name: str) -> Any:
    if name in _TLS_NAMES:
        return getattr(importlib.import_module("gridpilot.security.tls"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
