"""Security agents in a running central: keys rotated offline are picked up; spent
registration tokens are forgotten once expired."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import jwt

from central.agents.security import registration_pruner
from central.auth.runtime import REGISTRATION_GRACE
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer
from gridpilot.v1 import auth_pb2, pilots_pb2
from tests.central.agents.test_agents_in_central import eventually
from tests.central.rpc.pilot_helpers import resources
from tests.support.inprocess import inprocess_central, run


def test_offline_key_rotation_is_picked_up(tmp_path: Path) -> None:
    async def body() -> None:
        overrides = {"security": {"key_refresh_period": 0.05}}
        async with inprocess_central(tmp_path, overrides) as env:
            old = env.as_user("alice")
            keys_dir = Path(env.central.config.central.data_dir) / "keys"
            # As `gridpilot admin keys rotate --data-dir` does, from another process.
            rotated = KeySet.load_or_create(keys_dir)
            new_kid = rotated.rotate(time.time()).kid
            offline = TokenIssuer(rotated, issuer="gridpilot", audience="gridpilot")
            token, _ = offline.issue(sub="bob", role=Role.USER, group="belle_user", lifetime=60)

            async def accepted() -> bool:
                try:
                    await env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=env.bearer(token))
                except grpc.aio.AioRpcError:
                    return False
                return True

            await eventually(accepted, within=5)
            # Tokens of the retired key stay valid; central now signs with the new key.
            assert (await env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=old)).subject
            reply = await env.pilots.RegisterPilot(
                pilots_pb2.RegisterPilotRequest(pilot_id="pk", resources=resources()),
                metadata=env.bearer(env.registration_token()),
            )
            assert jwt.get_unverified_header(reply.pilot_token)["kid"] == new_kid

    run(body())


def test_expired_spent_registrations_are_pruned(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            c = env.central
            token = env.registration_token()
            await c.store.consume_registration("old", expires=time.time() - 10)
            await env.pilots.RegisterPilot(
                pilots_pb2.RegisterPilotRequest(pilot_id="pr", resources=resources()),
                metadata=env.bearer(token),
            )
            assert set(await c.store.used_registrations(0.0)) == {"old", _jti(token)}
            later = time.time() + 700 + REGISTRATION_GRACE
            pruner = registration_pruner(c.store, c.security, clock=lambda: later - 600)
            await pruner.run_once()
            # Only the long-expired one goes; the fresh one is kept until past its expiry.
            assert set(await c.store.used_registrations(0.0)) == {_jti(token)}
            assert c.security.revocations.is_used(_jti(token))
            pruner = registration_pruner(c.store, c.security, clock=lambda: later)
            await pruner.run_once()
            assert await c.store.used_registrations(0.0) == {}
            assert not c.security.revocations.is_used(_jti(token))

    run(body())


def _jti(token: str) -> str:
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti
