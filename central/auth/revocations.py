"""Revoked tokens and spent registration tokens, in memory, checked on every verification.

The store is the durable copy (loaded at start, written before an RPC answers); this is the
copy the verifier asks, on every call including cache hits, so lookups are dict reads only.
"""

from __future__ import annotations

from enum import StrEnum

from central.logic.identity import PERSON_ROLES
from central.store.records import RevocationRecord
from gridpilot.security.claims import Claims, Role, TokenError, TokenErrorReason


class RevocationKind(StrEnum):
    # One token.
    JTI = "jti"
    # Every token of a person (user, production manager, admin) issued up to the revocation.
    USER = "user"
    # Every token of a site director issued up to the revocation, and the pilot
    # registration tokens it minted until then.
    SITE_DIRECTOR = "site_director"
    # The pilot's session token and every job token it handed out; a pilot id is never
    # reused, so this one is for good.
    PILOT = "pilot"


_DIRECTOR_ROLES = frozenset({Role.SITE_DIRECTOR, Role.PILOT_REGISTRATION})


class Revocations:
    def __init__(self) -> None:
        self._by_kind: dict[RevocationKind, dict[str, RevocationRecord]] = {
            kind: {} for kind in RevocationKind
        }
        # Spent single-use registration tokens: jti -> expiry.
        self._used: dict[str, float] = {}

    def load(self, records: list[RevocationRecord], used: dict[str, float]) -> None:
        for record in records:
            self.add(record)
        self._used.update(used)

    def add(self, record: RevocationRecord) -> None:
        self._by_kind[RevocationKind(record.kind)][record.value] = record

    def all(self) -> list[RevocationRecord]:
        return sorted(
            (r for table in self._by_kind.values() for r in table.values()),
            key=lambda r: (r.created, r.kind, r.value),
        )

    def __len__(self) -> int:
        return sum(len(table) for table in self._by_kind.values())

    # ---- single-use registration tokens ---------------------------------------------------

    def is_used(self, jti: str) -> bool:
        return jti in self._used

    def mark_used(self, jti: str, expires: float) -> None:
        self._used[jti] = expires

    def prune_used(self, now: float) -> int:
        expired = [jti for jti, expires in self._used.items() if expires < now]
        for jti in expired:
            del self._used[jti]
        return len(expired)

    @property
    def used_count(self) -> int:
        return len(self._used)

    # ---- the verifier's hook --------------------------------------------------------------

    def check(self, claims: Claims) -> bool:
        """TokenVerifier's `is_revoked`: raises TokenError(REVOKED) naming why, else False."""
        record = self._by_kind[RevocationKind.JTI].get(claims.jti)
        if record is not None:
            raise _revoked(claims, f"token {claims.jti} was revoked", record)
        if claims.role is Role.PILOT_REGISTRATION and claims.jti in self._used:
            raise TokenError(
                TokenErrorReason.REVOKED,
                f"registration token already used (token {claims.jti} is single-use)",
            )
        if claims.role in PERSON_ROLES:
            record = self._by_kind[RevocationKind.USER].get(claims.sub)
            if record is not None and claims.iat <= record.created:
                raise _revoked(claims, f"tokens of user {claims.sub} were revoked", record)
        elif claims.role in _DIRECTOR_ROLES:
            record = self._by_kind[RevocationKind.SITE_DIRECTOR].get(claims.sub)
            if record is not None and claims.iat <= record.created:
                raise _revoked(claims, f"tokens of site director {claims.sub} were revoked", record)
        if claims.pilot_id:
            record = self._by_kind[RevocationKind.PILOT].get(claims.pilot_id)
            if record is not None:
                raise _revoked(claims, f"tokens of pilot {claims.pilot_id} were revoked", record)
        return False


def _revoked(claims: Claims, what: str, record: RevocationRecord) -> TokenError:
    reason = f": {record.reason}" if record.reason else ""
    return TokenError(TokenErrorReason.REVOKED, f"{what}{reason}")
