"""An external OIDC issuer (the collaboration's IAM) trusted through a JWKS file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gridpilot.security.claims import Claims, Role, TokenError, TokenErrorReason
from gridpilot.security.external import ExternalIssuer
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer, TokenVerifier
from tests.gridpilot.security.conftest import AUDIENCE, ISSUER, FakeClock

IAM = "https://belle-iam.example.org/"
IAM_AUDIENCE = "gridpilot-central"
GROUP_MAP = {
    "/belle/users": "belle_user",
    "/belle/production": "belle_production",
    "/belle/admins": "belle_admin",
}


class Iam:
    """The IAM side: its private keys, its JWKS file, and tokens it signs."""

    def __init__(self, directory: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.jwks_path = directory / "iam-jwks.json"
        self.write_jwks()

    def write_jwks(self, extra: list[dict[str, Any]] | None = None) -> None:
        rsa_jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(ECAlgorithm.to_jwk(self.ec.public_key()))
        keys = [{**rsa_jwk, "kid": "rsa-1"}, {**ec_jwk, "kid": "ec-1"}, *(extra or [])]
        self.jwks_path.write_text(json.dumps({"keys": keys}))

    def token(
        self, clock: FakeClock, *, kid: str = "rsa-1", groups: object = "unset", **changes: Any
    ) -> str:
        now = int(clock.now)
        payload: dict[str, Any] = {
            "iss": IAM,
            "sub": "7c1e-uuid",
            "aud": IAM_AUDIENCE,
            "exp": now + 3600,
            "iat": now,
            "jti": "iam-token-1",
            "preferred_username": "alice",
            "wlcg.groups": ["/belle", "/belle/users"],
        }
        payload.update(changes)
        if groups != "unset":
            payload["wlcg.groups"] = groups
        payload = {k: v for k, v in payload.items() if v is not None}
        if kid.startswith("ec"):
            return jwt.encode(payload, self.ec, algorithm="ES256", headers={"kid": kid})
        return jwt.encode(payload, self.rsa, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def iam(tmp_path: Path) -> Iam:
    return Iam(tmp_path)


def _external(iam: Iam) -> ExternalIssuer:
    return ExternalIssuer(
        issuer=IAM, jwks_path=iam.jwks_path, audience=IAM_AUDIENCE, group_map=dict(GROUP_MAP)
    )


def _verifier(keyset: KeySet, clock: FakeClock, iam: Iam, revoked: set[str] | None = None) -> Any:
    gone = revoked if revoked is not None else set()
    return TokenVerifier(
        keyset,
        issuer=ISSUER,
        audience=AUDIENCE,
        external=[_external(iam)],
        is_revoked=lambda claims: claims.jti in gone,
        clock=clock,
    )


def _reason(verifier: TokenVerifier, token: str) -> TokenErrorReason:
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    return info.value.reason


def test_iam_user_token_maps_to_a_gridpilot_user(
    keyset: KeySet, clock: FakeClock, iam: Iam
) -> None:
    verifier = _verifier(keyset, clock, iam)
    claims = verifier.verify(iam.token(clock))
    assert claims == Claims(
        iss=IAM,
        sub="alice",
        aud=IAM_AUDIENCE,
        exp=int(clock.now) + 3600,
        iat=int(clock.now),
        nbf=int(clock.now),
        jti="iam-token-1",
        vo="belle",
        group="belle_user",
        scope="role:user",
        role=Role.USER,
    )
    # Our own tokens keep working next to the external ones.
    ours, _ = TokenIssuer(keyset, issuer=ISSUER, audience=AUDIENCE, clock=clock).issue(
        sub="bob", role=Role.USER, lifetime=60
    )
    assert verifier.verify(ours).iss == ISSUER


def test_groups_decide_group_and_role(keyset: KeySet, clock: FakeClock, iam: Iam) -> None:
    verifier = _verifier(keyset, clock, iam)
    cases = [
        (["/belle/admins"], "belle_admin", Role.ADMIN),
        (["/belle/production", "/other"], "belle_production", Role.PRODUCTION),
        ("/belle/users", "belle_user", Role.USER),  # a string claim, not a list
        # Several mapped groups: the first in the configured map wins.
        (["/belle/admins", "/belle/users"], "belle_user", Role.USER),
    ]
    for index, (groups, group, role) in enumerate(cases):
        claims = verifier.verify(
            iam.token(clock, kid="ec-1", jti=f"t{index}", **{"wlcg.groups": groups})
        )
        assert (claims.group, claims.role, claims.scope) == (group, role, f"role:{role.value}")


def test_external_refusals(keyset: KeySet, clock: FakeClock, iam: Iam, tmp_path: Path) -> None:
    verifier = _verifier(keyset, clock, iam)
    unmapped = iam.token(clock, groups=["/cms/users"])
    assert _reason(verifier, unmapped) is TokenErrorReason.UNMAPPED_GROUP
    no_groups = iam.token(clock, groups=None)
    assert _reason(verifier, no_groups) is TokenErrorReason.MISSING_CLAIM
    no_user = iam.token(clock, preferred_username=None)
    assert _reason(verifier, no_user) is TokenErrorReason.MISSING_CLAIM
    other_audience = iam.token(clock, aud="some-other-service")
    assert _reason(verifier, other_audience) is TokenErrorReason.WRONG_AUDIENCE
    assert _reason(verifier, iam.token(clock, kid="rsa-9")) is TokenErrorReason.UNKNOWN_KEY
    # Signed by another RSA key that claims to be the IAM's.
    impostor = Iam(tmp_path / "..")
    assert _reason(verifier, impostor.token(clock)) is TokenErrorReason.BAD_SIGNATURE
    # HS256 naming the RSA key (the classic algorithm confusion) is not accepted.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"rsa-1"}').rstrip(b"=").decode()
    body = iam.token(clock).split(".")[1]
    assert _reason(verifier, f"{header}.{body}.c2lnbmF0dXJl") is TokenErrorReason.BAD_SIGNATURE


def test_external_times_and_revocation(keyset: KeySet, clock: FakeClock, iam: Iam) -> None:
    revoked: set[str] = set()
    verifier = _verifier(keyset, clock, iam, revoked)
    token = iam.token(clock, jti=None, exp=int(clock.now) + 100)
    claims = verifier.verify(token)
    assert len(claims.jti) == 32  # no jti in the token: named by its hash, still revocable
    revoked.add(claims.jti)
    assert _reason(verifier, token) is TokenErrorReason.REVOKED
    revoked.clear()
    clock.advance(106)
    assert _reason(verifier, token) is TokenErrorReason.EXPIRED
    early = iam.token(clock, nbf=int(clock.now) + 600)
    assert _reason(verifier, early) is TokenErrorReason.NOT_YET_VALID


def test_replaced_jwks_is_picked_up(keyset: KeySet, clock: FakeClock, iam: Iam) -> None:
    verifier = _verifier(keyset, clock, iam)
    old_token = iam.token(clock)
    assert verifier.verify(old_token).sub == "alice"
    # The IAM rolls its RSA key; the operator installs the new JWKS.
    iam.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    iam.write_jwks()
    new_token = iam.token(clock, jti="iam-token-2")
    assert _reason(verifier, new_token) is TokenErrorReason.BAD_SIGNATURE
    verifier.refresh_keys()
    assert verifier.verify(new_token).jti == "iam-token-2"
    assert _reason(verifier, old_token) is TokenErrorReason.BAD_SIGNATURE
    # A JWKS file caught half-written keeps the keys we had.
    iam.jwks_path.write_text('{"keys": [')
    verifier.refresh_keys()
    assert verifier.verify(iam.token(clock, jti="iam-token-3")).jti == "iam-token-3"


def test_configuration_errors(keyset: KeySet, iam: Iam, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ExternalIssuer(issuer=IAM, jwks_path=tmp_path / "none.json", audience="a")
    oct_only = tmp_path / "oct.json"
    oct_only.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}))
    with pytest.raises(ValueError, match="no key for"):
        ExternalIssuer(issuer=IAM, jwks_path=oct_only, audience="a")
    clash = ExternalIssuer(issuer=ISSUER, jwks_path=iam.jwks_path, audience="a")
    with pytest.raises(ValueError, match="configured twice"):
        TokenVerifier(keyset, issuer=ISSUER, audience=AUDIENCE, external=[clash])
