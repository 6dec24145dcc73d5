"""What a verified token says: the roles, the claims, and why a token was refused."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Role(StrEnum):
    USER = "user"
    PRODUCTION = "production"
    ADMIN = "admin"
    SITE_DIRECTOR = "site_director"
    PILOT_REGISTRATION = "pilot_registration"
    PILOT = "pilot"
    JOB = "job"


class Claims(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """The payload of a gridpilot token (also what an external token is mapped to).

    Frozen because the verifier's cache hands the same object to every caller of a token.
    """

    iss: str
    sub: str
    aud: str
    exp: int
    iat: int
    nbf: int
    jti: str
    vo: str = "belle"
    group: str = ""
    # Space-separated, e.g. "role:user"; room for finer permissions later.
    scope: str = ""
    role: Role
    # Site director: the sites it may act for.
    sites: list[str] = []
    # Pilot registration and pilot session: where the pilot runs.
    site: str = ""
    ce: str = ""
    queue: str = ""
    pilot_id: str = ""
    # Job token: one job, one attempt.
    job_id: int = 0
    attempt: int = 0

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split())

    def has_scope(self, scope: str) -> bool:
        return scope in self.scope.split()

    def may_act_for_site(self, site: str) -> bool:
        """A site director's reach; other roles name their one site in `site`."""
        if self.role is Role.SITE_DIRECTOR:
            return site in self.sites
        return bool(self.site) and self.site == site

    def missing_bindings(self) -> list[str]:
        """The claims this token's role needs but lacks (empty when it is complete)."""
        return [
            name
            for name in REQUIRED_BINDINGS.get(self.role, ())
            if not getattr(self, name)  # every binding's unset value is falsy ("", 0, [])
        ]


# Claims a token of each role must carry, so a token never grants more than it names.
REQUIRED_BINDINGS: dict[Role, tuple[str, ...]] = {
    Role.SITE_DIRECTOR: ("sites",),
    Role.PILOT_REGISTRATION: ("site", "ce"),
    Role.PILOT: ("pilot_id", "site", "ce"),
    Role.JOB: ("job_id", "attempt"),
}


class TokenErrorReason(StrEnum):
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    MISSING_CLAIM = "missing_claim"
    # An external token whose groups map to no gridpilot group.
    UNMAPPED_GROUP = "unmapped_group"


class TokenError(Exception):
    """A token was refused; `reason` says why in one word, the message in a sentence."""

    def __init__(self, reason: TokenErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __str__(self) -> str:
        return f"token refused ({self.reason.value}): {self.args[0]}"
