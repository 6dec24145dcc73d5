"""AuthService on a central served over TLS: login with a client certificate on the mutual-TLS
login port, renewal, an external issuer's tokens, WhoAmI, pilot registration and service
tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gridpilot.channel import ClientSecurity, open_channel
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import auth_pb2, auth_pb2_grpc, pilots_pb2, sitedirectors_pb2
from tests.central.rpc.pilot_helpers import resources
from tests.central.security.helpers import refused_async
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import Env, inprocess_central, run
from tests.support.pki import TestPki

PD = grpc.StatusCode.PERMISSION_DENIED
IAM = "https://iam.example.org/"


def _iam_key(tmp_path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="iam-1", alg="ES256", use="sig")
    (tmp_path / "iam.jwks").write_text(json.dumps({"keys": [jwk]}))
    return key


def _iam_token(key: ec.EllipticCurvePrivateKey, user: str, groups: list[str]) -> str:
    now = int(time.time())
    claims = {
        "iss": IAM,
        "sub": "uuid-" + user,
        "aud": "gridpilot",
        "exp": now + 600,
        "iat": now,
        "preferred_username": user,
        "wlcg.groups": groups,
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "iam-1"})


def _overrides(tmp_path: Path) -> dict[str, Any]:
    pki = TestPki(tmp_path / "pki")
    return {
        "security": {
            "login_listen": "127.0.0.1:0",
            "tls_client_ca": str(pki.ca_path),
            "external_issuers": [
                {
                    "issuer": IAM,
                    "jwks_file": str(tmp_path / "iam.jwks"),
                    "audience": "gridpilot",
                    "group_map": {"/belle/users": "belle_user"},
                }
            ],
        },
        "users": [
            {"name": "alice", "subject": "Alice A", "groups": ["belle_user", "belle_production"]},
            {"name": "bob", "groups": ["belle_user"], "banned": True},
        ],
    }


def _login_stub(env: Env, cert: Path | None, key: Path | None, ca: Path | None = None) -> Any:
    tls = ClientTls(ca=ca or env.ca_path, cert=cert, key=key)
    channel = open_channel(f"127.0.0.1:{env.login_port}", ClientSecurity(tls=tls))
    return channel, auth_pb2_grpc.AuthServiceStub(channel)


async def _login(env: Env, cn: str, group: str = "", **kw: Any) -> auth_pb2.IssueTokenResponse:
    cert, key = env.pki.client_cert(cn)
    channel, stub = _login_stub(env, cert, key)
    async with channel:
        return await stub.IssueToken(  # type: ignore[no-any-return]
            auth_pb2.IssueTokenRequest(group=group, **kw), timeout=10
        )


def test_login_with_a_client_certificate(tmp_path: Path) -> None:
    _iam_key(tmp_path)

    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            assert env.login_port
            reply = await _login(env, "Alice A")
            assert (reply.subject, reply.group, reply.role) == ("alice", "belle_user", "user")
            assert reply.expires_unix == pytest.approx(time.time() + 86400, abs=30)
            me = await env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=env.bearer(reply.token))
            assert (me.subject, me.group, me.issuer) == ("alice", "belle_user", "gridpilot")
            prod = await _login(env, "Alice A", "belle_production", lifetime=30 * 86400)
            assert prod.role == "production"
            assert prod.expires_unix <= time.time() + 7 * 86400 + 5  # capped
            details = await refused_async(lambda: _login(env, "Alice A", "belle_admin"), PD)
            assert "may not act in group 'belle_admin'" in details
            details = await refused_async(lambda: _login(env, "eve"), PD)
            assert "'eve' is not a configured user" in details
            details = await refused_async(lambda: _login(env, "bob"), PD)
            assert details == "user bob is banned"

    run(body())


def test_login_port_refuses_clients_without_a_trusted_certificate(tmp_path: Path) -> None:
    _iam_key(tmp_path)

    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            request = auth_pb2.IssueTokenRequest()
            channel, stub = _login_stub(env, None, None)
            async with channel:
                await refused_async(
                    lambda: stub.IssueToken(request, timeout=5), grpc.StatusCode.UNAVAILABLE
                )
            cert, key = env.pki.other_client_cert("Alice A")
            channel, stub = _login_stub(env, cert, key)
            async with channel:
                await refused_async(
                    lambda: stub.IssueToken(request, timeout=5), grpc.StatusCode.UNAVAILABLE
                )
            # On the main port, no certificate is asked: without a token there is no proof.
            plain = open_channel(env.target, env.client_security())
            async with plain:
                details = await refused_async(
                    lambda: auth_pb2_grpc.AuthServiceStub(plain).IssueToken(request, timeout=5),
                    grpc.StatusCode.UNAUTHENTICATED,
                )
            assert "needs proof of who you are" in details

    run(body())


def test_renewal_with_a_user_token(tmp_path: Path) -> None:
    _iam_key(tmp_path)

    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            alice = env.as_user("alice")
            same = await env.auth.IssueToken(auth_pb2.IssueTokenRequest(), metadata=alice)
            assert (same.subject, same.group) == ("alice", "belle_user")
            other = await env.auth.IssueToken(
                auth_pb2.IssueTokenRequest(group="belle_production"), metadata=alice
            )
            assert other.role == "production"
            # Someone known only by their token keeps their group.
            zoe = env.as_user("zoe")
            details = await refused_async(
                lambda: env.auth.IssueToken(
                    auth_pb2.IssueTokenRequest(group="belle_admin"), metadata=zoe
                ),
                PD,
            )
            assert "zoe may not act in group 'belle_admin'" in details
            director = env.as_director()
            details = await refused_async(
                lambda: env.auth.IssueToken(auth_pb2.IssueTokenRequest(), metadata=director), PD
            )
            assert "cannot get a user token" in details
            # A banned user's tokens are refused at the door, renewal included.
            details = await refused_async(
                lambda: env.auth.IssueToken(
                    auth_pb2.IssueTokenRequest(), metadata=env.as_user("bob")
                ),
                PD,
            )
            assert details == "user bob is banned"

    run(body())


def test_external_issuer_tokens_map_to_a_group(tmp_path: Path) -> None:
    key = _iam_key(tmp_path)

    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            iam = env.bearer(_iam_token(key, "xavier", ["/belle/users", "/other"]))
            me = await env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=iam)
            assert (me.subject, me.group, me.role, me.issuer) == (
                "xavier",
                "belle_user",
                "user",
                IAM,
            )
            reply = await env.auth.IssueToken(auth_pb2.IssueTokenRequest(), metadata=iam)
            assert (reply.subject, reply.group) == ("xavier", "belle_user")
            mine = await env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=env.bearer(reply.token))
            assert mine.issuer == "gridpilot"
            await refused_async(
                lambda: env.auth.IssueToken(
                    auth_pb2.IssueTokenRequest(group="belle_production"), metadata=iam
                ),
                PD,
            )
            unmapped = env.bearer(_iam_token(key, "yves", ["/somewhere"]))
            details = await refused_async(
                lambda: env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=unmapped),
                grpc.StatusCode.UNAUTHENTICATED,
            )
            assert "(unmapped_group)" in details

    run(body())


def test_mint_pilot_tokens_single_use_and_limits(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            director = env.as_director([SITE])
            for bad in (
                auth_pb2.MintPilotTokensRequest(site=SITE, ce=CE, count=0),
                auth_pb2.MintPilotTokensRequest(site=SITE, ce=CE, count=1001),
                auth_pb2.MintPilotTokensRequest(site=SITE, ce="nowhere", count=1),
                auth_pb2.MintPilotTokensRequest(site=SITE, ce=CE, queue="nope", count=1),
                auth_pb2.MintPilotTokensRequest(site=SITE, count=1),
            ):
                await refused_async(
                    lambda b=bad: env.auth.MintPilotTokens(b, metadata=director),  # type: ignore[misc]
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
            minted = await env.auth.MintPilotTokens(
                auth_pb2.MintPilotTokensRequest(site=SITE, ce=CE, queue=QUEUE, count=3),
                metadata=director,
            )
            assert len(minted.tokens) == 3
            assert minted.expires_unix == pytest.approx(time.time() + 600, abs=30)
            long = await env.auth.MintPilotTokens(
                auth_pb2.MintPilotTokensRequest(site=SITE, ce=CE, count=1, lifetime=1e9),
                metadata=director,
            )
            assert long.expires_unix <= time.time() + 2 * 86400 + 5
            request = pilots_pb2.RegisterPilotRequest(pilot_id="m1", resources=resources())
            token = env.bearer(minted.tokens[0])
            reply = await env.pilots.RegisterPilot(request, metadata=token)
            pilot = await env.auth.WhoAmI(
                auth_pb2.WhoAmIRequest(), metadata=env.bearer(reply.pilot_token)
            )
            assert (pilot.role, pilot.subject) == ("pilot", "m1")
            assert reply.pilot_token_expires_unix == pytest.approx(time.time() + 3 * 86400, abs=30)
            details = await refused_async(
                lambda: env.pilots.RegisterPilot(request, metadata=token),
                grpc.StatusCode.UNAUTHENTICATED,
            )
            assert "registration token already used" in details

    run(body())


def test_issue_service_token(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            admin = env.as_admin()
            reply = await env.auth.IssueServiceToken(
                auth_pb2.IssueServiceTokenRequest(
                    subject="kek-director", role="site_director", sites=[SITE], lifetime=1e9
                ),
                metadata=admin,
            )
            assert reply.jti
            assert reply.expires_unix <= time.time() + 30 * 86400 + 5
            demand = await env.directors.GetPilotDemand(
                sitedirectors_pb2.GetPilotDemandRequest(queues=[resources()]),
                metadata=env.bearer(reply.token),
            )
            assert len(demand.demands) == 1
            prod = await env.auth.IssueServiceToken(
                auth_pb2.IssueServiceTokenRequest(subject="mc-manager", role="production"),
                metadata=admin,
            )
            me = await env.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=env.bearer(prod.token))
            assert (me.role, me.group) == ("production", "belle_production")
            for bad in (
                auth_pb2.IssueServiceTokenRequest(subject="d", role="site_director"),
                auth_pb2.IssueServiceTokenRequest(
                    subject="d", role="site_director", sites=["NOWHERE"]
                ),
                auth_pb2.IssueServiceTokenRequest(subject="d", role="pilot"),
                auth_pb2.IssueServiceTokenRequest(subject="", role="admin"),
                auth_pb2.IssueServiceTokenRequest(subject="d", role="admin", group="belle_user"),
            ):
                await refused_async(
                    lambda b=bad: env.auth.IssueServiceToken(b, metadata=admin),  # type: ignore[misc]
                    grpc.StatusCode.INVALID_ARGUMENT,
                )

    run(body())
