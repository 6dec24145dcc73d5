"""Revocation and ban rules, on their own (the RPC paths are in tests/central/security/)."""

from __future__ import annotations

import pytest

from central.auth.bans import Bans
from central.auth.revocations import Revocations
from central.config import config_from_dict
from central.store.records import BanRecord, RevocationRecord
from gridpilot.security.claims import Claims, Role, TokenError


def claims(role: Role, sub: str = "alice", iat: int = 100, **kw: object) -> Claims:
    fields: dict[str, object] = {
        "iss": "gridpilot",
        "aud": "gridpilot",
        "exp": iat + 600,
        "iat": iat,
        "nbf": iat,
        "jti": f"jti-{sub}-{iat}",
    }
    fields.update(kw)
    return Claims(sub=sub, role=role, **fields)  # type: ignore[arg-type]


def revoked_by(revocations: Revocations, c: Claims) -> str | None:
    """Why the claims are refused, or None when they are not."""
    try:
        result = revocations.check(c)
    except TokenError as exc:
        return f"{exc.reason.value}: {exc}"
    assert result is False
    return None


def rec(kind: str, value: str, created: float = 150.0) -> RevocationRecord:
    return RevocationRecord(kind=kind, value=value, reason="r", created=created)


def test_user_revocation_covers_tokens_issued_until_then() -> None:
    r = Revocations()
    r.add(rec("user", "alice"))
    assert revoked_by(r, claims(Role.USER, iat=100))
    assert revoked_by(r, claims(Role.ADMIN, iat=150))
    assert revoked_by(r, claims(Role.USER, iat=151)) is None  # a later login
    # The subject of a director or a job is not a user's name.
    assert revoked_by(r, claims(Role.SITE_DIRECTOR, sites=["S"])) is None


def test_director_revocation_covers_its_registration_tokens() -> None:
    r = Revocations()
    r.add(rec("site_director", "dir"))
    reg = claims(Role.PILOT_REGISTRATION, sub="dir", site="S", ce="C")
    assert revoked_by(r, reg)
    assert revoked_by(r, claims(Role.SITE_DIRECTOR, sub="dir", sites=["S"]))
    assert revoked_by(r, claims(Role.USER, sub="dir")) is None


def test_pilot_revocation_is_for_good_and_covers_job_tokens() -> None:
    r = Revocations()
    r.add(rec("pilot", "p1", created=50.0))
    session = claims(Role.PILOT, sub="p1", iat=999, pilot_id="p1", site="S", ce="C")
    job = claims(Role.JOB, sub="job:3", iat=999, job_id=3, attempt=1, pilot_id="p1")
    assert revoked_by(r, session)
    assert revoked_by(r, job)
    assert revoked_by(r, claims(Role.JOB, sub="job:4", job_id=4, attempt=1, pilot_id="p2")) is None


def test_jti_and_spent_registration_tokens() -> None:
    r = Revocations()
    token = claims(Role.USER)
    r.add(rec("jti", token.jti))
    assert "was revoked" in (revoked_by(r, token) or "")
    reg = claims(Role.PILOT_REGISTRATION, sub="dir", site="S", ce="C")
    assert revoked_by(r, reg) is None
    r.mark_used(reg.jti, expires=700.0)
    assert "already used" in (revoked_by(r, reg) or "")
    assert r.prune_used(now=701.0) == 1
    assert revoked_by(r, reg) is None
    assert len(r) == 1
    with pytest.raises(ValueError, match="'group' is not a valid RevocationKind"):
        r.add(rec("group", "x"))


def test_admin_bans_override_the_configuration() -> None:
    config = config_from_dict(
        {
            "sites": [{"name": "S1", "banned": True}, {"name": "S2"}],
            "users": [{"name": "eve", "groups": ["belle_user"], "banned": True}],
        }
    )
    bans = Bans(config)
    assert bans.site_banned("S1")
    assert not bans.site_banned("S2")
    assert bans.banned_users() == {"eve"}
    bans.set_site(BanRecord(name="S1", banned=False, reason="", updated=1.0))
    bans.set_site(BanRecord(name="S2", banned=True, reason="", updated=1.0))
    bans.set_user(BanRecord(name="eve", banned=False, reason="", updated=1.0))
    bans.set_user(BanRecord(name="mallory", banned=True, reason="", updated=1.0))
    assert (bans.site_banned("S1"), bans.site_banned("S2")) == (False, True)
    assert bans.banned_users() == {"mallory"}
