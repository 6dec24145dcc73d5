"""Signed tokens (JWT, EdDSA): central issues them, every service verifies them.

Verification is on every RPC's path, so verified tokens are cached by the SHA-256 of the token
until they expire (and central puts the tokens it issues there at once, see
`TokenVerifier.remember`); a cache hit still checks the expiry against the clock and asks
`is_revoked`, so a revocation takes effect at once even for cached tokens. The verifier is
meant for one event loop (no locks); give each thread its own.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jwt
import msgspec

from gridpilot.logs import get_logger
from gridpilot.security.claims import (
    REQUIRED_BINDINGS,
    Claims,
    Role,
    TokenError,
    TokenErrorReason,
)
from gridpilot.security.external import GROUP_ROLES, ExternalIssuer, pyjwt_error
from gridpilot.security.keys import KeySet, SigningKey, b64url

__all__ = [
    "GROUP_ROLES",
    "REQUIRED_BINDINGS",
    "Claims",
    "ExternalIssuer",
    "Role",
    "TokenError",
    "TokenErrorReason",
    "TokenIssuer",
    "TokenVerifier",
]

log = get_logger(__name__)

ALGORITHM = "EdDSA"
# Far above any token we issue; refuses absurd inputs before any parsing.
MAX_TOKEN_CHARS = 16_384
_REQUIRED = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "role"]


class TokenIssuer:
    """Mints tokens signed with the key set's current key."""

    def __init__(
        self,
        keyset: KeySet,
        *,
        issuer: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keyset = keyset
        self._issuer = issuer
        self._audience = audience
        self._clock = clock

    def issue(
        self,
        *,
        sub: str,
        role: Role,
        lifetime: float,
        group: str = "",
        vo: str = "belle",
        sites: Sequence[str] = (),
        site: str = "",
        ce: str = "",
        queue: str = "",
        pilot_id: str = "",
        job_id: int = 0,
        attempt: int = 0,
        extra_scopes: Sequence[str] = (),
    ) -> tuple[str, Claims]:
        """A signed token and its claims. The role's bindings (see REQUIRED_BINDINGS) are
        required: e.g. a job token without job_id and attempt would be refused anyway."""
        if not sub:
            raise ValueError("a token needs a subject (sub)")
        if lifetime <= 0:
            raise ValueError(f"token lifetime must be positive, got {lifetime}")
        iat = int(self._clock())
        claims = Claims(
            iss=self._issuer,
            sub=sub,
            aud=self._audience,
            exp=iat + math.ceil(lifetime),
            iat=iat,
            nbf=iat,
            jti=uuid.uuid4().hex,
            vo=vo,
            group=group,
            scope=" ".join([f"role:{role.value}", *extra_scopes]),
            role=role,
            sites=list(sites),
            site=site,
            ce=ce,
            queue=queue,
            pilot_id=pilot_id,
            job_id=job_id,
            attempt=attempt,
        )
        missing = claims.missing_bindings()
        if missing:
            raise ValueError(f"a {role.value} token needs {', '.join(missing)}")
        key = self._keyset.current()
        token = _sign(key, claims)
        log.debug("token.issued", jti=claims.jti, sub=sub, role=role.value, kid=key.kid)
        return token, claims


class TokenVerifier:
    """Verifies our tokens and those of trusted external issuers, with a bounded cache."""

    def __init__(
        self,
        keyset: KeySet,
        *,
        issuer: str,
        audience: str,
        external: Sequence[ExternalIssuer] = (),
        is_revoked: Callable[[Claims], bool] = lambda claims: False,
        clock: Callable[[], float] = time.time,
        cache_size: int = 100_000,
        leeway: float = 5.0,
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must not be negative, got {cache_size}")
        self._keyset = keyset
        self._issuer = issuer
        self._audience = audience
        self._external: dict[str, ExternalIssuer] = {}
        for ext in external:
            if ext.issuer == issuer or ext.issuer in self._external:
                raise ValueError(f"issuer {ext.issuer!r} is configured twice")
            self._external[ext.issuer] = ext
        self._is_revoked = is_revoked
        self._clock = clock
        self._cache_size = cache_size
        self._leeway = leeway
        self._cache: OrderedDict[bytes, Claims] = OrderedDict()
        self._keys = keyset.verification_keys()

    @property
    def cached(self) -> int:
        """How many verified tokens the cache holds."""
        return len(self._cache)

    def refresh_keys(self) -> None:
        """Pick up a rotated or pruned key set (and re-read external JWKS files)."""
        self._keyset.reload()
        keys = self._keyset.verification_keys()
        withdrawn = not keys.keys() >= self._keys.keys()
        for ext in self._external.values():
            before = ext.key_fingerprints()
            try:
                ext.refresh()
            except (OSError, ValueError) as exc:
                # A JWKS file caught mid-replacement must not stop verification: keep the
                # keys we have and try again at the next refresh.
                log.error("tokens.jwks_refresh_failed", issuer=ext.issuer, error=str(exc))
                continue
            withdrawn = withdrawn or not ext.key_fingerprints() >= before
        # A key that disappeared may have been withdrawn on purpose (compromise): tokens it
        # signed must not live on in the cache. Dropping everything is simple, and rare.
        if withdrawn:
            self._cache.clear()
        if keys.keys() != self._keys.keys():
            log.info("tokens.keys_changed", kids=",".join(sorted(keys)), withdrawn=withdrawn)
        self._keys = keys

    def remember(self, token: str, claims: Claims) -> None:
        """Put a token this process has just issued into the cache, so its first use skips
        the signature check. Only for our own tokens (`claims` must be what the issuer
        signed): a hit still checks expiry and revocation, and the cache stays bounded."""
        if claims.iss != self._issuer:
            raise ValueError(f"only tokens of issuer {self._issuer!r} can be remembered")
        if not self._cache_size or not token or len(token) > MAX_TOKEN_CHARS:
            return
        try:
            digest = hashlib.sha256(token.encode("ascii")).digest()
        except UnicodeEncodeError as exc:
            raise ValueError("token is not ASCII") from exc
        self._cache[digest] = claims
        self._cache.move_to_end(digest)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def verify(self, token: str) -> Claims:
        """The claims of a valid token; TokenError (with a `reason`) otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenError(TokenErrorReason.MALFORMED, "token is empty or too long")
        try:
            digest = hashlib.sha256(token.encode("ascii")).digest()
        except UnicodeEncodeError as exc:
            raise TokenError(TokenErrorReason.MALFORMED, "token is not ASCII") from exc
        now = self._clock()
        claims = self._cache.get(digest)
        if claims is not None:
            if now >= claims.exp + self._leeway:
                del self._cache[digest]
                raise _expired(claims)
            self._cache.move_to_end(digest)
            self._check_revoked(claims)
            return claims
        claims = self._verify_uncached(token, now)
        self._check_revoked(claims)
        if self._cache_size:
            self._cache[digest] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _check_revoked(self, claims: Claims) -> None:
        if self._is_revoked(claims):
            raise TokenError(TokenErrorReason.REVOKED, f"token {claims.jti} has been revoked")

    def _verify_uncached(self, token: str, now: float) -> Claims:
        try:
            unverified = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError(TokenErrorReason.MALFORMED, f"not a JWT: {exc}") from exc
        header: Mapping[str, Any] = unverified["header"]
        issuer = unverified["payload"].get("iss")
        if issuer == self._issuer:
            claims = self._decode_ours(token, header)
        elif isinstance(issuer, str) and issuer in self._external:
            claims = self._external[issuer].decode(token, header)
        elif issuer is None:
            raise TokenError(TokenErrorReason.MISSING_CLAIM, "token has no issuer (iss)")
        else:
            raise TokenError(TokenErrorReason.WRONG_ISSUER, f"issuer {issuer!r} is not trusted")
        if now >= claims.exp + self._leeway:
            raise _expired(claims)
        if now + self._leeway < claims.nbf:
            raise TokenError(
                TokenErrorReason.NOT_YET_VALID,
                f"token {claims.jti} is valid only from {claims.nbf} (now {int(now)})",
            )
        return claims

    def _decode_ours(self, token: str, header: Mapping[str, Any]) -> Claims:
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError(TokenErrorReason.UNKNOWN_KEY, f"signing key {kid!r} is not known")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": _REQUIRED,
                    # Times are checked by the caller, against our clock and leeway.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise pyjwt_error(exc) from exc
        try:
            claims = msgspec.convert(payload, Claims)
        except msgspec.ValidationError as exc:
            raise TokenError(TokenErrorReason.MALFORMED, f"bad claims: {exc}") from exc
        missing = claims.missing_bindings()
        if missing:
            raise TokenError(
                TokenErrorReason.MISSING_CLAIM,
                f"a {claims.role.value} token needs {', '.join(missing)}",
            )
        return claims


def _sign(key: SigningKey, claims: Claims) -> str:
    """A compact JWS (RFC 7515) of the claims, signed with Ed25519: the same bytes PyJWT's
    encode would build, minus its generic per-call work (a job token is minted per match).
    Verification stays with PyJWT."""
    header = _HEADERS.get(key.kid)
    if header is None:
        header = b64url(
            msgspec.json.encode({"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"})
        ).encode("ascii")
        _HEADERS[key.kid] = header
    signing_input = header + b"." + b64url(msgspec.json.encode(claims)).encode("ascii")
    signature = key.private_key.sign(signing_input)
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


# Encoded JWS headers by key id: a handful of keys over a process's life.
_HEADERS: dict[str, bytes] = {}


def _expired(claims: Claims) -> TokenError:
    return TokenError(
        TokenErrorReason.EXPIRED, f"token {claims.jti} of {claims.sub} expired at {claims.exp}"
    )
