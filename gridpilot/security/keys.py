"""Central's token-signing keys (Ed25519) with rotation.

The key set lives in `DIRECTORY/signing-keys.json` (0600). The newest key that is not retired
signs new tokens; retired keys stay for verification until every token they signed has
expired, then `prune` drops them. The central process and the `gridpilot admin keys` command
may both change the file: every change re-reads it under an exclusive lock first, so neither
loses the other's key.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gridpilot.logs import get_logger
from gridpilot.security.files import PRIVATE_DIR_MODE, PRIVATE_MODE, write_file_atomic

log = get_logger(__name__)

KEYS_FILE_NAME = "signing-keys.json"
_LOCK_FILE_NAME = "signing-keys.lock"
_FILE_VERSION = 1
_KID_LENGTH = 16


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE writes binary values."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable id derived from the public key (base32 of its SHA-256)."""
    digest = hashlib.sha256(_raw_public(public_key)).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:_KID_LENGTH]


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    created: float
    retired: float | None = None

    @classmethod
    def generate(cls, now: float) -> SigningKey:
        private_key = Ed25519PrivateKey.generate()
        return cls(kid=key_id(private_key.public_key()), private_key=private_key, created=now)

    @cached_property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def active(self) -> bool:
        return self.retired is None

    def public_jwk(self) -> dict[str, str]:
        """RFC 8037 OKP JWK of the public key."""
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(_raw_public(self.public_key)),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }


class _KeyRecord(msgspec.Struct, forbid_unknown_fields=True):
    kid: str
    private_key: str  # unpadded base64url of the 32-byte raw Ed25519 private key
    created: float
    retired: float | None = None


class _KeyFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    keys: list[_KeyRecord]


def _to_record(key: SigningKey) -> _KeyRecord:
    raw = key.private_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return _KeyRecord(
        kid=key.kid, private_key=b64url(raw), created=key.created, retired=key.retired
    )


def _from_record(record: _KeyRecord, path: Path) -> SigningKey:
    try:
        private_key = Ed25519PrivateKey.from_private_bytes(b64url_decode(record.private_key))
    except ValueError as exc:
        raise ValueError(f"{path}: key {record.kid!r} is not a valid Ed25519 key") from exc
    kid = key_id(private_key.public_key())
    if kid != record.kid:
        raise ValueError(f"{path}: key id {record.kid!r} does not match its key (expected {kid})")
    return SigningKey(
        kid=kid, private_key=private_key, created=record.created, retired=record.retired
    )


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class KeySet:
    """The signing keys of one central, oldest first. Changes are saved at once."""

    def __init__(self, directory: Path, keys: list[SigningKey]) -> None:
        self._directory = directory
        self._keys = list(keys)
        self._stamp: tuple[int, int, int] | None = None

    @property
    def path(self) -> Path:
        return self._directory / KEYS_FILE_NAME

    @classmethod
    def load_or_create(cls, directory: Path, *, now: float | None = None) -> KeySet:
        """The key set in `directory`; creates the directory (0700) and a first key if needed."""
        directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        keyset = cls(directory, [])
        with keyset._locked():
            keyset._read()
            if not any(key.active for key in keyset._keys):
                key = SigningKey.generate(time.time() if now is None else now)
                keyset._keys.append(key)
                keyset._write()
                log.info("keys.created", kid=key.kid, directory=str(directory))
        return keyset

    def signing_keys(self) -> list[SigningKey]:
        return list(self._keys)

    def get(self, kid: str) -> SigningKey | None:
        return next((key for key in self._keys if key.kid == kid), None)

    def current(self) -> SigningKey:
        """The key that signs new tokens: the newest one not retired."""
        active = [key for key in self._keys if key.active]
        if not active:
            raise RuntimeError(f"{self.path} holds no active signing key")
        return max(active, key=lambda key: key.created)

    def rotate(self, now: float) -> SigningKey:
        """Make a new current key; the previous ones are retired at `now` and kept."""
        with self._locked():
            self._read()
            new_key = SigningKey.generate(now)
            self._keys = [
                replace(key, retired=now) if key.active else key for key in self._keys
            ] + [new_key]
            self._write()
        log.info("keys.rotated", kid=new_key.kid, keys=len(self._keys))
        return new_key

    def prune(self, now: float, max_token_lifetime: float) -> list[str]:
        """Drop keys retired more than `max_token_lifetime` ago; returns their kids."""
        with self._locked():
            self._read()
            cutoff = now - max_token_lifetime
            dropped = [
                key.kid for key in self._keys if key.retired is not None and key.retired < cutoff
            ]
            if dropped:
                self._keys = [key for key in self._keys if key.kid not in dropped]
                self._write()
        if dropped:
            log.info("keys.pruned", kids=",".join(dropped), keys=len(self._keys))
        return dropped

    def verification_keys(self) -> dict[str, Ed25519PublicKey]:
        return {key.kid: key.public_key for key in self._keys}

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self._keys]}

    def save(self) -> None:
        with self._locked():
            self._write()

    def reload(self) -> bool:
        """Re-read the file if another process changed it; True when the keys changed."""
        if _file_stamp(self.path) == self._stamp:
            return False
        before = [(key.kid, key.retired) for key in self._keys]
        with self._locked():
            self._read()
        return [(key.kid, key.retired) for key in self._keys] != before

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self._directory / _LOCK_FILE_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> None:
        stamp = _file_stamp(self.path)
        if stamp is None:
            self._keys = []
            self._stamp = None
            return
        data = self.path.read_bytes()
        try:
            parsed = msgspec.json.decode(data, type=_KeyFile)
        except msgspec.DecodeError as exc:
            raise ValueError(f"{self.path} is not a valid signing-key file: {exc}") from exc
        if parsed.version != _FILE_VERSION:
            raise ValueError(f"{self.path}: unsupported key file version {parsed.version}")
        self._keys = [_from_record(record, self.path) for record in parsed.keys]
        self._stamp = stamp

    def _write(self) -> None:
        content = _KeyFile(version=_FILE_VERSION, keys=[_to_record(k) for k in self._keys])
        write_file_atomic(
            self.path, msgspec.json.format(msgspec.json.encode(content)), PRIVATE_MODE
        )
        self._stamp = _file_stamp(self.path)
