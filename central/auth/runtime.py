"""`Security`: central's keys, token issuer and verifier, revocations and bans, in one object.

security = Security.create(config, clock=time.time)   # signing keys in data_dir/keys/
await security.load(store)                              # revocations, spent tokens, bans
caller = security.authenticate(token)                   # TokenError when refused
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from central.auth.bans import Bans
from central.auth.revocations import Revocations
from central.config import CentralConfig
from central.logic.identity import Caller
from central.store.interface import Store
from gridpilot.logs import get_logger
from gridpilot.security.claims import Claims, Role
from gridpilot.security.external import ExternalIssuer
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer, TokenVerifier

log = get_logger(__name__)

# Where central keeps its signing keys inside its data directory (as `gridpilot admin keys`).
KEYS_SUBDIR = "keys"

# Spent registration tokens are remembered this long past their expiry: the verifier still
# accepts a token for a few seconds of clock leeway after `exp`.
REGISTRATION_GRACE = 300.0

_GROUP_ROLES = {"user": Role.USER, "production": Role.PRODUCTION, "admin": Role.ADMIN}


def keys_directory(data_dir: Path) -> Path:
    return data_dir / KEYS_SUBDIR


class Security:
    def __init__(
        self,
        config: CentralConfig,
        keyset: KeySet,
        *,
        external: Sequence[ExternalIssuer] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        sec = config.security
        self.config = config
        self.keyset = keyset
        self.clock = clock
        self.revocations = Revocations()
        self.bans = Bans(config)
        self._group_roles = {g.name: _GROUP_ROLES[g.role] for g in config.effective_groups()}
        self._sharing = {g.name for g in config.effective_groups() if g.job_sharing}
        self.verifier = TokenVerifier(
            keyset,
            issuer=sec.issuer,
            audience=sec.audience,
            external=external,
            is_revoked=self.revocations.check,
            clock=clock,
            cache_size=sec.token_cache_size,
        )
        self.issuer = TokenIssuer(keyset, issuer=sec.issuer, audience=sec.audience, clock=clock)
        # Callers built from cached claims, so a cache hit costs no allocation either.
        self._callers: dict[str, tuple[Claims, Caller]] = {}
        self._callers_max = max(sec.token_cache_size, 1)

    @classmethod
    def create(cls, config: CentralConfig, *, clock: Callable[[], float] = time.time) -> Security:
        """Load (or create) the signing keys and the external issuers' JWKS files."""
        keyset = KeySet.load_or_create(keys_directory(Path(config.central.data_dir)))
        roles = {g.name: _GROUP_ROLES[g.role] for g in config.effective_groups()}
        external = [
            ExternalIssuer(
                issuer=ext.issuer,
                jwks_path=Path(ext.jwks_file),
                audience=ext.audience,
                user_claim=ext.user_claim,
                group_claim=ext.group_claim,
                group_map=dict(ext.group_map),
                group_roles=roles,
            )
            for ext in config.security.external_issuers
        ]
        return cls(config, keyset, external=external, clock=clock)

    async def load(self, store: Store) -> None:
        self.revocations.load(
            await store.list_revocations(),
            await store.used_registrations(self.clock() - REGISTRATION_GRACE),
        )
        self.bans.load(await store.list_bans("site"), await store.list_bans("user"))
        log.info(
            "security.loaded",
            revocations=len(self.revocations),
            used_registrations=self.revocations.used_count,
            kid=self.keyset.current().kid,
        )

    def refresh_keys(self) -> None:
        """Pick up keys rotated by `gridpilot admin keys rotate` and new JWKS files."""
        self.verifier.refresh_keys()

    def rotate_keys(self) -> str:
        key = self.keyset.rotate(self.clock())
        self.verifier.refresh_keys()
        return key.kid

    # ---- authentication -------------------------------------------------------------------

    def authenticate(self, token: str) -> Caller:
        """The caller of a valid token; TokenError (with its reason) otherwise."""
        claims = self.verifier.verify(token)
        hit = self._callers.get(claims.jti)
        if hit is not None and hit[0] is claims:
            return hit[1]
        caller = Caller.from_claims(claims, job_sharing=claims.group in self._sharing)
        if len(self._callers) >= self._callers_max:
            self._callers.clear()
        self._callers[claims.jti] = (claims, caller)
        return caller

    def group_role(self, group: str) -> Role | None:
        return self._group_roles.get(group)

    # ---- issuing ----------------------------------------------------------------------------

    def remember(self, token: str, claims: Claims) -> tuple[str, Claims]:
        """Seed the verifier's cache with a token we just issued: every token is new, so its
        first use would otherwise pay a full signature check (see docs/benchmarks.md)."""
        self.verifier.remember(token, claims)
        return token, claims

    def user_token(self, subject: str, group: str, lifetime: float) -> tuple[str, Claims]:
        role = self._group_roles.get(group)
        if role is None:
            raise ValueError(f"unknown group {group!r}")
        return self.remember(
            *self.issuer.issue(sub=subject, role=role, group=group, lifetime=lifetime)
        )

    def registration_token(
        self, director: str, site: str, ce: str, queue: str, lifetime: float
    ) -> tuple[str, Claims]:
        return self.remember(
            *self.issuer.issue(
                sub=director,
                role=Role.PILOT_REGISTRATION,
                lifetime=lifetime,
                site=site,
                ce=ce,
                queue=queue,
            )
        )

    def pilot_token(self, pilot_id: str, site: str, ce: str, queue: str) -> tuple[str, Claims]:
        return self.remember(
            *self.issuer.issue(
                sub=pilot_id,
                role=Role.PILOT,
                lifetime=self.config.security.pilot_token_lifetime,
                pilot_id=pilot_id,
                site=site,
                ce=ce,
                queue=queue,
            )
        )

    def job_token(self, job_id: int, attempt: int, pilot_id: str, site: str) -> str:
        token, claims = self.issuer.issue(
            sub=f"job:{job_id}",
            role=Role.JOB,
            lifetime=self.config.security.job_token_lifetime,
            job_id=job_id,
            attempt=attempt,
            pilot_id=pilot_id,
            site=site,
        )
        self.remember(token, claims)
        return token
