"""The security part of central's configuration: TLS, tokens, groups and users.

    [security]
    tls_cert = "/etc/gridpilot/tls/server.pem"
    tls_key = "/etc/gridpilot/tls/server.key"
    # Optional: a second port where users log in with a client certificate (mutual TLS).
    tls_client_ca = "/etc/gridpilot/tls/ca.pem"
    login_listen = "0.0.0.0:50052"

    [[security.external_issuers]]
    issuer = "https://iam.example.org/"
    jwks_file = "/etc/gridpilot/iam-jwks.json"
    audience = "gridpilot"
    group_map = { "/belle/users" = "belle_user" }

    [[groups]]
    name = "belle_user"
    role = "user"
    job_sharing = false

    [[users]]
    name = "alice"
    subject = "alice"          # her client certificate's CN (default: the name)
    groups = ["belle_user"]

Imported into central.config; kept apart so each module stays small.
"""

from __future__ import annotations

import msgspec

MIB = 1024 * 1024
DAY = 86400.0

# A group's role decides what its tokens may do (see docs/security.md).
GROUP_ROLE_NAMES = ("user", "production", "admin")

# Used when the configuration names no [[groups]].
DEFAULT_GROUPS: tuple[tuple[str, str], ...] = (
    ("belle_user", "user"),
    ("belle_production", "production"),
    ("belle_admin", "admin"),
)

# Every client chunks its sandboxes well below this; a smaller cap would break uploads.
MIN_MESSAGE_BYTES = 64 * 1024


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ExternalIssuerSection(_Strict):
    issuer: str
    jwks_file: str
    audience: str
    user_claim: str = "preferred_username"
    group_claim: str = "wlcg.groups"
    # External group value (e.g. "/belle/users") -> gridpilot group; first match wins.
    group_map: dict[str, str] = msgspec.field(default_factory=dict)


class SecuritySection(_Strict):
    # Plaintext without TLS: only for a laptop; central logs a warning at start.
    insecure: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    # CA of user client certificates; with login_listen, serves the mutual-TLS login port.
    tls_client_ca: str = ""
    login_listen: str = ""
    issuer: str = "gridpilot"
    audience: str = "gridpilot"
    user_token_lifetime: float = DAY
    max_user_token_lifetime: float = 7 * DAY
    service_token_max_lifetime: float = 30 * DAY
    registration_token_lifetime: float = 600.0
    # What a site director may ask for: a pilot can wait in a batch queue for hours before
    # it registers.
    max_registration_token_lifetime: float = 2 * DAY
    pilot_token_lifetime: float = 3 * DAY
    job_token_lifetime: float = 3 * DAY
    max_message_bytes: int = 8 * MIB
    token_cache_size: int = 100_000
    # How often central re-reads its signing keys (rotated by `gridpilot admin keys rotate`)
    # and the external issuers' JWKS files.
    key_refresh_period: float = 60.0
    external_issuers: list[ExternalIssuerSection] = msgspec.field(default_factory=list)


class GroupSection(_Strict):
    name: str
    role: str = "user"
    # Members see (list, get, download) each other's jobs; managing stays with the owner.
    job_sharing: bool = False


class UserSection(_Strict):
    name: str
    # The CN of the user's client certificate; empty means the name.
    subject: str = ""
    # The first group is the default of gb2_proxy_init.
    groups: list[str] = msgspec.field(default_factory=list)
    banned: bool = False

    @property
    def cert_subject(self) -> str:
        return self.subject or self.name


def default_groups() -> list[GroupSection]:
    return [GroupSection(name=name, role=role) for name, role in DEFAULT_GROUPS]


_LIFETIMES = (
    "user_token_lifetime",
    "max_user_token_lifetime",
    "service_token_max_lifetime",
    "registration_token_lifetime",
    "max_registration_token_lifetime",
    "pilot_token_lifetime",
    "job_token_lifetime",
    "key_refresh_period",
)


def security_problems(
    security: SecuritySection, groups: list[GroupSection], users: list[UserSection]
) -> list[str]:
    """Everything wrong with the security settings, except missing TLS files (see
    `serving_problems`: `--insecure` on the command line may still excuse those)."""
    problems: list[str] = []
    for name in _LIFETIMES:
        if getattr(security, name) <= 0:
            problems.append(f"security.{name} must be positive")
    if security.user_token_lifetime > security.max_user_token_lifetime:
        problems.append("security.user_token_lifetime exceeds security.max_user_token_lifetime")
    if security.registration_token_lifetime > security.max_registration_token_lifetime:
        problems.append(
            "security.registration_token_lifetime exceeds security.max_registration_token_lifetime"
        )
    if security.max_message_bytes < MIN_MESSAGE_BYTES:
        problems.append(f"security.max_message_bytes must be at least {MIN_MESSAGE_BYTES}")
    if security.token_cache_size < 0:
        problems.append("security.token_cache_size must not be negative")
    if not security.issuer or not security.audience:
        problems.append("security.issuer and security.audience must not be empty")
    seen_issuers = {security.issuer}
    for ext in security.external_issuers:
        if ext.issuer in seen_issuers:
            problems.append(f"security.external_issuers: issuer {ext.issuer!r} appears twice")
        seen_issuers.add(ext.issuer)
        if not ext.group_map:
            problems.append(f"security.external_issuers {ext.issuer!r}: group_map is empty")
    group_names = [g.name for g in groups]
    for group in groups:
        if group.role not in GROUP_ROLE_NAMES:
            problems.append(
                f"group {group.name!r}: role {group.role!r} is not one of "
                + ", ".join(GROUP_ROLE_NAMES)
            )
    dupes = sorted({n for n in group_names if group_names.count(n) > 1})
    if dupes:
        problems.append(f"duplicate group name(s): {', '.join(dupes)}")
    known_groups = set(group_names)
    for ext in security.external_issuers:
        for external, mapped in ext.group_map.items():
            if mapped not in known_groups:
                problems.append(
                    f"security.external_issuers {ext.issuer!r}: {external!r} maps to "
                    f"unknown group {mapped!r}"
                )
    user_names = [u.name for u in users]
    dupes = sorted({n for n in user_names if user_names.count(n) > 1})
    if dupes:
        problems.append(f"duplicate user name(s): {', '.join(dupes)}")
    subjects = [u.cert_subject for u in users]
    dupes = sorted({s for s in subjects if subjects.count(s) > 1})
    if dupes:
        problems.append(f"duplicate user subject(s): {', '.join(dupes)}")
    for user in users:
        if not user.groups:
            problems.append(f"user {user.name!r} has no groups")
        for name in user.groups:
            if name not in known_groups:
                problems.append(f"user {user.name!r}: unknown group {name!r}")
    return problems


def serving_problems(security: SecuritySection) -> list[str]:
    """What central needs to serve: TLS files unless insecure; the login port's mTLS CA."""
    problems: list[str] = []
    if not security.insecure:
        for key in ("tls_cert", "tls_key"):
            if not getattr(security, key):
                problems.append(
                    f"security.{key} is required to serve TLS "
                    "(or run with --insecure / security.insecure = true, for tests only)"
                )
    if security.login_listen:
        for key in ("tls_cert", "tls_key", "tls_client_ca"):
            if not getattr(security, key):
                problems.append(f"security.login_listen needs security.{key}")
    return problems
