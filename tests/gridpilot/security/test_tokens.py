"""Tokens: issue and verify, every refusal reason, revocation, the cache, key rotation."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

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
from tests.gridpilot.security.conftest import AUDIENCE, ISSUER, FakeClock


def _issuer(keyset: KeySet, clock: FakeClock, **kwargs: str) -> TokenIssuer:
    settings = {"issuer": ISSUER, "audience": AUDIENCE, **kwargs}
    return TokenIssuer(keyset, clock=clock, **settings)


def _verifier(
    keyset: KeySet,
    clock: FakeClock,
    is_revoked: Callable[[Claims], bool] = lambda claims: False,
    cache_size: int = 1000,
) -> TokenVerifier:
    return TokenVerifier(
        keyset,
        issuer=ISSUER,
        audience=AUDIENCE,
        is_revoked=is_revoked,
        clock=clock,
        cache_size=cache_size,
        leeway=5.0,
    )


def _refused(verifier: TokenVerifier, token: str) -> TokenErrorReason:
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    assert str(info.value).startswith(f"token refused ({info.value.reason.value}): ")
    return info.value.reason


def _signed(keyset: KeySet, payload: dict[str, Any], kid: str | None = None) -> str:
    key = keyset.current()
    return jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": kid or key.kid})


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class _DecodeCounter:
    """Counts real signature checks (jwt.decode) to tell cache hits from misses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = jwt.decode

        def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(jwt, "decode", counting)


def test_issue_and_verify_every_role(keyset: KeySet, clock: FakeClock) -> None:
    issuer = _issuer(keyset, clock)
    verifier = _verifier(keyset, clock)
    cases: list[tuple[Role, dict[str, Any]]] = [
        (Role.USER, {"group": "belle_user"}),
        (Role.PRODUCTION, {"group": "belle_production"}),
        (Role.ADMIN, {"group": "belle_admin"}),
        (Role.SITE_DIRECTOR, {"sites": ["KEK", "DESY"]}),
        (Role.PILOT_REGISTRATION, {"site": "KEK", "ce": "ce01.kek.jp", "queue": "long"}),
        (Role.PILOT, {"site": "KEK", "ce": "ce01.kek.jp", "pilot_id": "p-1"}),
        (Role.JOB, {"job_id": 42, "attempt": 2}),
    ]
    for role, bindings in cases:
        token, issued = issuer.issue(sub="alice", role=role, lifetime=600, **bindings)
        claims = verifier.verify(token)
        assert claims == issued
        assert claims.role is role
        assert claims.scope == f"role:{role.value}"
        assert (claims.iss, claims.aud, claims.sub, claims.vo) == (
            ISSUER,
            AUDIENCE,
            "alice",
            "belle",
        )
        assert claims.iat == claims.nbf == int(clock.now)
        assert claims.exp == claims.iat + 600
        assert len(claims.jti) == 32
        for name, value in bindings.items():
            assert getattr(claims, name) == value
        assert jwt.get_unverified_header(token)["kid"] == keyset.current().kid
    director = verifier.verify(
        issuer.issue(sub="d", role=Role.SITE_DIRECTOR, lifetime=60, sites=["KEK"])[0]
    )
    assert director.may_act_for_site("KEK")
    assert not director.may_act_for_site("DESY")


def test_issue_refuses_incomplete_tokens(keyset: KeySet, clock: FakeClock) -> None:
    issuer = _issuer(keyset, clock)
    with pytest.raises(ValueError, match="needs job_id, attempt"):
        issuer.issue(sub="job", role=Role.JOB, lifetime=60)
    with pytest.raises(ValueError, match="needs sites"):
        issuer.issue(sub="d", role=Role.SITE_DIRECTOR, lifetime=60)
    with pytest.raises(ValueError, match="lifetime must be positive"):
        issuer.issue(sub="a", role=Role.USER, lifetime=0)
    with pytest.raises(ValueError, match="subject"):
        issuer.issue(sub="", role=Role.USER, lifetime=60)


def test_malformed(keyset: KeySet, clock: FakeClock) -> None:
    verifier = _verifier(keyset, clock)
    for token in ("", "not-a-token", "a.b.c", "x" * 20_000, "é.é.é"):
        assert _refused(verifier, token) is TokenErrorReason.MALFORMED
    # Well-signed, but a claim of the wrong type.
    bad_type = _signed(keyset, {**_payload(clock), "exp": "tomorrow"})
    assert _refused(verifier, bad_type) is TokenErrorReason.MALFORMED


def _payload(clock: FakeClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now)
    base = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": now + 60,
        "iat": now,
        "nbf": now,
        "jti": "j1",
        "role": "user",
    }
    base.update(changes)
    return base


def test_bad_signature(keyset: KeySet, clock: FakeClock, tmp_path: Any) -> None:
    verifier = _verifier(keyset, clock)
    token, _ = _issuer(keyset, clock).issue(sub="alice", role=Role.USER, lifetime=60)
    header, _payload_part, signature = token.split(".")
    # Same signature, different payload: an attempt to become someone else.
    forged = ".".join([header, _b64(_payload(clock, sub="admin", role="admin")), signature])
    assert _refused(verifier, forged) is TokenErrorReason.BAD_SIGNATURE
    # Signed by another key set's key while naming our key id.
    stranger = KeySet.load_or_create(tmp_path / "stranger")
    impostor = _signed(stranger, _payload(clock), kid=keyset.current().kid)
    assert _refused(verifier, impostor) is TokenErrorReason.BAD_SIGNATURE
    # "alg": "none" is never accepted, even naming our key.
    unsigned = jwt.encode(
        _payload(clock), key="", algorithm="none", headers={"kid": keyset.current().kid}
    )
    assert _refused(verifier, unsigned) is TokenErrorReason.BAD_SIGNATURE


def test_unknown_key(keyset: KeySet, clock: FakeClock, tmp_path: Any) -> None:
    verifier = _verifier(keyset, clock)
    stranger = KeySet.load_or_create(tmp_path / "stranger")
    token, _ = _issuer(stranger, clock).issue(sub="alice", role=Role.USER, lifetime=60)
    assert _refused(verifier, token) is TokenErrorReason.UNKNOWN_KEY
    no_kid = jwt.encode(_payload(clock), keyset.current().private_key, algorithm="EdDSA")
    assert _refused(verifier, no_kid) is TokenErrorReason.UNKNOWN_KEY


def test_wrong_issuer_and_audience(keyset: KeySet, clock: FakeClock) -> None:
    verifier = _verifier(keyset, clock)
    other_issuer, _ = _issuer(keyset, clock, issuer="https://evil.example").issue(
        sub="alice", role=Role.USER, lifetime=60
    )
    assert _refused(verifier, other_issuer) is TokenErrorReason.WRONG_ISSUER
    other_audience, _ = _issuer(keyset, clock, audience="another-service").issue(
        sub="alice", role=Role.USER, lifetime=60
    )
    assert _refused(verifier, other_audience) is TokenErrorReason.WRONG_AUDIENCE


def test_expired_and_not_yet_valid(keyset: KeySet, clock: FakeClock) -> None:
    verifier = _verifier(keyset, clock, cache_size=0)
    token, claims = _issuer(keyset, clock).issue(sub="alice", role=Role.USER, lifetime=60)
    clock.advance(60 + 4.9)  # inside the 5 s leeway
    assert verifier.verify(token) == claims
    clock.advance(0.2)
    assert _refused(verifier, token) is TokenErrorReason.EXPIRED

    future = FakeClock(clock.now + 120)
    early, _ = _issuer(keyset, future).issue(sub="alice", role=Role.USER, lifetime=600)
    assert _refused(verifier, early) is TokenErrorReason.NOT_YET_VALID
    clock.advance(116)
    assert verifier.verify(early).sub == "alice"


def test_missing_claims(keyset: KeySet, clock: FakeClock) -> None:
    verifier = _verifier(keyset, clock)
    for name in ("role", "jti", "exp", "sub", "iss"):
        payload = _payload(clock)
        del payload[name]
        assert _refused(verifier, _signed(keyset, payload)) is TokenErrorReason.MISSING_CLAIM
    # A job token that names no job would be a key to every job.
    job = _signed(keyset, _payload(clock, role="job", attempt=1))
    assert _refused(verifier, job) is TokenErrorReason.MISSING_CLAIM


def test_revoked_even_after_being_cached(
    keyset: KeySet, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    revoked: set[str] = set()
    verifier = _verifier(keyset, clock, is_revoked=lambda claims: claims.jti in revoked)
    issuer = _issuer(keyset, clock)
    token, claims = issuer.issue(sub="alice", role=Role.USER, lifetime=600)
    other, _ = issuer.issue(sub="bob", role=Role.USER, lifetime=600)
    counter = _DecodeCounter(monkeypatch)
    assert verifier.verify(token) == claims
    assert verifier.verify(token) == claims
    assert counter.calls == 1  # the second was a cache hit
    revoked.add(claims.jti)
    assert _refused(verifier, token) is TokenErrorReason.REVOKED
    assert verifier.verify(other).sub == "bob"
    # Revoked before first use: refused the same way.
    fresh_verifier = _verifier(keyset, clock, is_revoked=lambda claims: claims.jti in revoked)
    assert _refused(fresh_verifier, token) is TokenErrorReason.REVOKED
    assert fresh_verifier.cached == 0


def test_cache_is_bounded_least_recently_used(
    keyset: KeySet, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = _verifier(keyset, clock, cache_size=3)
    issuer = _issuer(keyset, clock)
    tokens = [issuer.issue(sub=f"u{i}", role=Role.USER, lifetime=600)[0] for i in range(5)]
    counter = _DecodeCounter(monkeypatch)
    for token in tokens[:3]:
        verifier.verify(token)
    verifier.verify(tokens[0])  # now the most recently used
    verifier.verify(tokens[3])  # evicts tokens[1], the least recently used
    assert verifier.cached == 3
    assert counter.calls == 4
    verifier.verify(tokens[0])
    assert counter.calls == 4
    verifier.verify(tokens[1])
    assert counter.calls == 5
    for token in tokens:
        verifier.verify(token)
    assert verifier.cached == 3


def test_cached_tokens_expire(
    keyset: KeySet, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = _verifier(keyset, clock)
    token, _ = _issuer(keyset, clock).issue(sub="alice", role=Role.USER, lifetime=30)
    verifier.verify(token)
    assert verifier.cached == 1
    counter = _DecodeCounter(monkeypatch)
    clock.advance(30 + 5)
    assert _refused(verifier, token) is TokenErrorReason.EXPIRED
    assert counter.calls == 0  # refused from the cache entry, which is now gone
    assert verifier.cached == 0
    assert _refused(verifier, token) is TokenErrorReason.EXPIRED


def test_rotation_and_pruning_reach_the_verifier(keyset: KeySet, clock: FakeClock) -> None:
    verifier = _verifier(keyset, clock)
    old_token, _ = _issuer(keyset, clock).issue(sub="alice", role=Role.USER, lifetime=600)
    verifier.verify(old_token)
    # The admin command rotates through its own KeySet on the same file.
    admin_keys = KeySet.load_or_create(keyset.path.parent)
    admin_keys.rotate(clock.now)
    new_token, _ = _issuer(admin_keys, clock).issue(sub="bob", role=Role.USER, lifetime=600)
    assert _refused(verifier, new_token) is TokenErrorReason.UNKNOWN_KEY
    verifier.refresh_keys()
    assert verifier.verify(new_token).sub == "bob"
    assert verifier.verify(old_token).sub == "alice"  # retired keys still verify
    # Central's own issuer signs with the new key after the refresh too.
    assert (
        jwt.get_unverified_header(
            _issuer(keyset, clock).issue(sub="c", role=Role.USER, lifetime=60)[0]
        )["kid"]
        == admin_keys.current().kid
    )
    # A pruned key's tokens are gone, even from the cache.
    admin_keys.prune(clock.now + 10_000, max_token_lifetime=600)
    verifier.refresh_keys()
    assert _refused(verifier, old_token) is TokenErrorReason.UNKNOWN_KEY
    assert verifier.verify(new_token).sub == "bob"
