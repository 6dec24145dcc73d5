"""Signing keys: creation, persistence with 0600, rotation, pruning, JWKS, two writers."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jwt
import pytest

from gridpilot.security.keys import KEYS_FILE_NAME, KeySet
from tests.gridpilot.security.conftest import START


def test_first_load_creates_one_key_with_private_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "keys"
    keyset = KeySet.load_or_create(directory, now=START)
    path = directory / KEYS_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    [key] = keyset.signing_keys()
    assert keyset.current() == key
    assert key.created == START
    assert key.retired is None
    assert len(key.kid) == 16
    # Loading again finds the same key instead of making another.
    again = KeySet.load_or_create(directory)
    assert [k.kid for k in again.signing_keys()] == [key.kid]
    assert again.verification_keys()[key.kid] == key.public_key


def test_rotate_retires_the_previous_key_and_persists(keyset: KeySet) -> None:
    first = keyset.current()
    second = keyset.rotate(START + 100)
    assert keyset.current() == second
    assert second.kid != first.kid
    retired = keyset.get(first.kid)
    assert retired is not None
    assert retired.retired == START + 100
    assert set(keyset.verification_keys()) == {first.kid, second.kid}
    reloaded = KeySet.load_or_create(keyset.path.parent)
    assert reloaded.current().kid == second.kid
    assert [(k.kid, k.retired) for k in reloaded.signing_keys()] == [
        (first.kid, START + 100),
        (second.kid, None),
    ]
    assert stat.S_IMODE(keyset.path.stat().st_mode) == 0o600


def test_prune_drops_only_keys_retired_longer_than_a_token_lifetime(keyset: KeySet) -> None:
    first = keyset.current().kid
    second = keyset.rotate(START + 1000).kid
    third = keyset.rotate(START + 5000).kid
    assert keyset.prune(START + 4500, max_token_lifetime=3600) == []
    # Retired at +1000: its last tokens expire at +4600 at the latest.
    assert keyset.prune(START + 4600, max_token_lifetime=3600) == []
    assert keyset.prune(START + 4601, max_token_lifetime=3600) == [first]
    assert set(keyset.verification_keys()) == {second, third}
    # The current key is never pruned, however old.
    assert keyset.prune(START + 10**9, max_token_lifetime=1) == [second]
    assert keyset.current().kid == third
    assert [k.kid for k in KeySet.load_or_create(keyset.path.parent).signing_keys()] == [third]


def test_public_jwks_verifies_our_tokens(keyset: KeySet) -> None:
    keyset.rotate(START + 1)
    jwks = keyset.public_jwks()
    assert len(jwks["keys"]) == 2
    for jwk in jwks["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
        assert "d" not in jwk
    current = keyset.current()
    token = jwt.encode({"sub": "x"}, current.private_key, algorithm="EdDSA")
    parsed = jwt.PyJWKSet.from_dict(jwks)
    assert jwt.decode(token, parsed[current.kid].key, algorithms=["EdDSA"]) == {"sub": "x"}


def test_two_writers_do_not_lose_each_others_keys(keyset: KeySet) -> None:
    # Central holds one KeySet; the admin command opens another on the same file.
    other = KeySet.load_or_create(keyset.path.parent)
    from_admin = other.rotate(START + 10).kid
    from_central = keyset.rotate(START + 20).kid
    kids = [k.kid for k in KeySet.load_or_create(keyset.path.parent).signing_keys()]
    assert from_admin in kids
    assert kids[-1] == from_central
    assert keyset.current().kid == from_central


def test_reload_notices_changes_by_another_process(keyset: KeySet) -> None:
    assert keyset.reload() is False
    other = KeySet.load_or_create(keyset.path.parent)
    new = other.rotate(START + 10)
    assert keyset.reload() is True
    assert keyset.current().kid == new.kid
    assert keyset.reload() is False


def test_damaged_files_are_refused(tmp_path: Path) -> None:
    keyset = KeySet.load_or_create(tmp_path, now=START)
    content = json.loads(keyset.path.read_text())
    content["keys"][0]["kid"] = "aaaaaaaaaaaaaaaa"
    keyset.path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="does not match its key"):
        KeySet.load_or_create(tmp_path)
    keyset.path.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid signing-key file"):
        KeySet.load_or_create(tmp_path)
