"""Security: the tokens central issues are already in its verifier's cache (so their first
use skips the signature check), and revocations still refuse them at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.auth.runtime import Security
from central.config import config_from_dict
from central.store.records import RevocationRecord
from gridpilot.security.claims import Role, TokenError, TokenErrorReason
from gridpilot.security.keys import KeySet

NOW = 1_800_000_000.0


def _security(tmp_path: Path) -> Security:
    config = config_from_dict(
        {
            "central": {"data_dir": str(tmp_path / "data")},
            "sites": [{"name": "S1"}],
            "users": [{"name": "alice", "groups": ["belle_user"]}],
        }
    )
    return Security(config, KeySet.load_or_create(tmp_path / "keys", now=NOW), clock=lambda: NOW)


def test_issued_tokens_are_cached_at_issue(tmp_path: Path) -> None:
    security = _security(tmp_path)
    assert security.verifier.cached == 0
    pilot_token, pilot_claims = security.pilot_token("pilot-1", "S1", "ce1", "q1")
    job_token = security.job_token(42, 1, "pilot-1", "S1")
    user_token, user_claims = security.user_token("alice", "belle_user", 600)
    reg_token, reg_claims = security.registration_token("dir", "S1", "ce1", "q1", 600)
    assert security.verifier.cached == 4
    # The very claims object issued comes back: a cache hit, not a fresh decode.
    assert security.verifier.verify(pilot_token) is pilot_claims
    assert security.verifier.verify(user_token) is user_claims
    assert security.verifier.verify(reg_token) is reg_claims
    caller = security.authenticate(job_token)
    assert caller.role is Role.JOB
    assert caller.job_id == 42
    assert security.verifier.cached == 4


@pytest.mark.parametrize("kind", ["jti", "pilot"])
def test_revocation_refuses_a_remembered_job_token(tmp_path: Path, kind: str) -> None:
    security = _security(tmp_path)
    job_token = security.job_token(42, 1, "pilot-1", "S1")
    claims = security.verifier.verify(job_token)
    security.authenticate(job_token)
    value = claims.jti if kind == "jti" else "pilot-1"
    security.revocations.add(
        RevocationRecord(kind=kind, value=value, reason="test", created=NOW + 1)
    )
    with pytest.raises(TokenError) as info:
        security.authenticate(job_token)
    assert info.value.reason is TokenErrorReason.REVOKED
