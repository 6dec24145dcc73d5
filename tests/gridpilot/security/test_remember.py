"""Tokens central issues enter the verifier's cache at once; hits still expire and revoke.
Also: tokens signed without PyJWT's encode are standard JWS that PyJWT itself verifies."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest

from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import (
    Claims,
    Role,
    TokenError,
    TokenErrorReason,
    TokenIssuer,
    TokenVerifier,
)
from tests.gridpilot.security.conftest import AUDIENCE, ISSUER, START, FakeClock


def _job_token(issuer: TokenIssuer, job_id: int = 7) -> tuple[str, Claims]:
    return issuer.issue(
        sub=f"job:{job_id}",
        role=Role.JOB,
        lifetime=60,
        job_id=job_id,
        attempt=1,
        pilot_id="p1",
        site="S1",
    )


def _pair(
    keyset: KeySet, clock: FakeClock, revoked: set[str] | None = None, cache_size: int = 100
) -> tuple[TokenIssuer, TokenVerifier]:
    gone = revoked if revoked is not None else set()
    issuer = TokenIssuer(keyset, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    verifier = TokenVerifier(
        keyset,
        issuer=ISSUER,
        audience=AUDIENCE,
        is_revoked=lambda c: c.jti in gone,
        clock=clock,
        cache_size=cache_size,
        leeway=5.0,
    )
    return issuer, verifier


def test_remembered_token_skips_the_signature_check(
    keyset: KeySet, clock: FakeClock, tmp_path: Path
) -> None:
    issuer, _ = _pair(keyset, clock)
    # A verifier that does not know the signing key refuses the token unless it was
    # remembered: so accepting it proves the hit path answered.
    stranger = TokenVerifier(
        KeySet.load_or_create(tmp_path / "other", now=START),
        issuer=ISSUER,
        audience=AUDIENCE,
        clock=clock,
    )
    token, claims = _job_token(issuer)
    with pytest.raises(TokenError) as info:
        stranger.verify(token)
    assert info.value.reason is TokenErrorReason.UNKNOWN_KEY
    stranger.remember(token, claims)
    assert stranger.cached == 1
    assert stranger.verify(token) is claims


def test_revocation_reaches_a_remembered_token_at_once(keyset: KeySet, clock: FakeClock) -> None:
    revoked: set[str] = set()
    issuer, verifier = _pair(keyset, clock, revoked)
    token, claims = _job_token(issuer)
    verifier.remember(token, claims)
    assert verifier.verify(token) is claims
    revoked.add(claims.jti)
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    assert info.value.reason is TokenErrorReason.REVOKED


def test_remembered_token_expires(keyset: KeySet, clock: FakeClock) -> None:
    issuer, verifier = _pair(keyset, clock)
    token, claims = _job_token(issuer)
    verifier.remember(token, claims)
    clock.advance(60 + 4)
    assert verifier.verify(token) is claims
    clock.advance(2)
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    assert info.value.reason is TokenErrorReason.EXPIRED
    assert verifier.cached == 0


def test_remember_is_bounded_like_the_cache(keyset: KeySet, clock: FakeClock) -> None:
    issuer, verifier = _pair(keyset, clock, cache_size=2)
    tokens = [_job_token(issuer, job_id) for job_id in (1, 2, 3)]
    for token, claims in tokens:
        verifier.remember(token, claims)
    assert verifier.cached == 2
    # The oldest fell out: it is verified in full again (a fresh Claims object).
    first, first_claims = tokens[0]
    again = verifier.verify(first)
    assert again == first_claims
    assert again is not first_claims
    assert verifier.verify(tokens[2][0]) is tokens[2][1]

    _, no_cache = _pair(keyset, clock, cache_size=0)
    no_cache.remember(*tokens[0])
    assert no_cache.cached == 0


def test_remember_refuses_foreign_claims(keyset: KeySet, clock: FakeClock) -> None:
    other = TokenIssuer(keyset, issuer="someone-else", audience=AUDIENCE, clock=clock)
    _, verifier = _pair(keyset, clock)
    token, claims = _job_token(other)
    with pytest.raises(ValueError, match="only tokens of issuer"):
        verifier.remember(token, claims)
    assert verifier.cached == 0


def test_issued_tokens_are_standard_jws(keyset: KeySet, clock: FakeClock) -> None:
    issuer, verifier = _pair(keyset, clock)
    token, claims = _job_token(issuer)
    key = keyset.current()
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
    payload = jwt.decode(
        token,
        key.public_key,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert payload["job_id"] == 7
    assert payload["role"] == "job"
    assert payload["jti"] == claims.jti
    assert verifier.verify(token) == claims

    # A changed payload under the same signature is refused by both.
    head, body, sig = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["job_id"] = 8
    forged_body = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    forged = f"{head}.{forged_body}.{sig}"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.public_key, algorithms=["EdDSA"], audience=AUDIENCE)
    with pytest.raises(TokenError) as info:
        verifier.verify(forged)
    assert info.value.reason is TokenErrorReason.BAD_SIGNATURE
