"""Tokens of an external OIDC issuer (the collaboration's IAM), trusted through its JWKS file.

The IAM's public keys are read from a file the operator keeps current (no network fetch on the
verification path); the user's gridpilot group comes from a group claim through an explicit
map, and the group decides the role through a small table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gridpilot.logs import get_logger
from gridpilot.security.claims import Claims, Role, TokenError, TokenErrorReason

log = get_logger(__name__)

# Mapped gridpilot group -> role; every other mapped group is an ordinary user.
GROUP_ROLES: dict[str, Role] = {
    "belle_admin": Role.ADMIN,
    "belle_production": Role.PRODUCTION,
}

# Asymmetric only: an "oct" (HMAC) key in a JWKS would let anyone holding it mint tokens.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")


@dataclass
class ExternalIssuer:
    """One trusted external issuer.

    `group_map` maps values of the group claim (e.g. "/belle/users") to gridpilot groups
    (e.g. "belle_user"); its order is the preference when a token carries several mapped
    groups, so list the least privileged first if users should not act as admins by default.
    """

    issuer: str
    jwks_path: Path
    audience: str
    user_claim: str = "preferred_username"
    group_claim: str = "wlcg.groups"
    group_map: dict[str, str] = field(default_factory=dict)
    vo: str = "belle"
    group_roles: Mapping[str, Role] = field(default_factory=lambda: dict(GROUP_ROLES))
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    _keys: dict[str, jwt.PyJWK] = field(init=False, repr=False, default_factory=dict)
    _sole_key: jwt.PyJWK | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-read the JWKS file (after the operator replaced it with the IAM's new keys)."""
        try:
            keyset = jwt.PyJWKSet.from_json(self.jwks_path.read_text())
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"JWKS file {self.jwks_path} of issuer {self.issuer} does not exist"
            ) from exc
        except jwt.PyJWTError as exc:
            raise ValueError(f"JWKS file {self.jwks_path} has no usable key: {exc}") from exc
        usable = [key for key in keyset.keys if key.algorithm_name in self.algorithms]
        if not usable:
            raise ValueError(
                f"JWKS file {self.jwks_path} has no key for {', '.join(self.algorithms)}"
            )
        self._keys = {key.key_id: key for key in usable if key.key_id}
        self._sole_key = usable[0] if len(usable) == 1 else None
        log.debug("external.keys_loaded", issuer=self.issuer, keys=len(usable))

    def key_fingerprints(self) -> frozenset[str]:
        """ "kid:sha256-of-public-key" of every usable key: an IAM may reuse a kid for a
        new key, so ids alone do not tell whether a key was replaced."""
        keys = list(self._keys.values())
        if self._sole_key is not None:
            keys.append(self._sole_key)
        return frozenset(f"{key.key_id or ''}:{_fingerprint(key)}" for key in keys)

    def decode(self, token: str, header: Mapping[str, Any]) -> Claims:
        """Verify the signature, issuer and audience; map the user and group to `Claims`.

        Times (exp, nbf) are left to the caller, which owns the clock and the leeway.
        """
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else self._sole_key
        if key is None:
            raise TokenError(
                TokenErrorReason.UNKNOWN_KEY,
                f"key {kid!r} is not in the JWKS of issuer {self.issuer}",
            )
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iat", "iss", "aud", self.user_claim],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise pyjwt_error(exc) from exc
        return self._to_claims(token, payload)

    def _to_claims(self, token: str, payload: Mapping[str, Any]) -> Claims:
        user = payload[self.user_claim]
        if not isinstance(user, str) or not user:
            raise TokenError(
                TokenErrorReason.MISSING_CLAIM, f"claim {self.user_claim!r} is not a user name"
            )
        group = self._map_group(payload.get(self.group_claim))
        role = self.group_roles.get(group, Role.USER)
        try:
            iat = int(payload["iat"])
            exp = int(payload["exp"])
            nbf = int(payload.get("nbf", iat))
        except (TypeError, ValueError) as exc:
            raise TokenError(TokenErrorReason.MALFORMED, f"bad time claim: {exc}") from exc
        jti = payload.get("jti")
        if not isinstance(jti, str) or not jti:
            # Revocation works by jti; a token without one is named by its own hash.
            jti = hashlib.sha256(token.encode()).hexdigest()[:32]
        return Claims(
            iss=self.issuer,
            sub=user,
            aud=self.audience,
            exp=exp,
            iat=iat,
            nbf=nbf,
            jti=jti,
            vo=self.vo,
            group=group,
            scope=f"role:{role.value}",
            role=role,
        )

    def _map_group(self, raw: object) -> str:
        if isinstance(raw, str):
            values = set(raw.replace(",", " ").split())
        elif isinstance(raw, list):
            values = {value for value in raw if isinstance(value, str)}
        else:
            raise TokenError(
                TokenErrorReason.MISSING_CLAIM, f"token has no group claim {self.group_claim!r}"
            )
        for external_group, group in self.group_map.items():
            if external_group in values:
                return group
        raise TokenError(
            TokenErrorReason.UNMAPPED_GROUP,
            f"none of the groups {sorted(values)} is mapped to a gridpilot group",
        )


def _fingerprint(key: jwt.PyJWK) -> str:
    public = key.key.public_key() if hasattr(key.key, "private_bytes") else key.key
    spki = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def pyjwt_error(exc: jwt.PyJWTError) -> TokenError:
    """PyJWT's exception as our reason; the order matters (subclasses first)."""
    reason = TokenErrorReason.MALFORMED
    if isinstance(exc, jwt.InvalidSignatureError | jwt.InvalidAlgorithmError):
        reason = TokenErrorReason.BAD_SIGNATURE
    elif isinstance(exc, jwt.MissingRequiredClaimError):
        reason = TokenErrorReason.MISSING_CLAIM
    elif isinstance(exc, jwt.InvalidAudienceError):
        reason = TokenErrorReason.WRONG_AUDIENCE
    elif isinstance(exc, jwt.InvalidIssuerError):
        reason = TokenErrorReason.WRONG_ISSUER
    elif isinstance(exc, jwt.ExpiredSignatureError):
        reason = TokenErrorReason.EXPIRED
    elif isinstance(exc, jwt.ImmatureSignatureError):
        reason = TokenErrorReason.NOT_YET_VALID
    return TokenError(reason, str(exc) or type(exc).__name__)
