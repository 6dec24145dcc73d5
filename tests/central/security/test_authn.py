"""Authentication against a real central process over TLS: every reason a token is refused.

Each refused call is UNAUTHENTICATED with a message naming the reason, and changes nothing
(checked with an administrator's view afterwards).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import jwt
import msgspec
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gridpilot.channel import AUTHORIZATION_KEY
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tokens import TokenIssuer
from gridpilot.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    pilots_pb2,
    pilots_pb2_grpc,
    sitedirectors_pb2,
    sitedirectors_pb2_grpc,
)
from tests.central.rpc.pilot_helpers import resources
from tests.central.security.helpers import refused, spec
from tests.support.central_process import CentralHandle, running_central

U = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    with running_central(tmp_path_factory.mktemp("authn")) as handle:
        yield handle


def _issuer(central: CentralHandle, **kw: object) -> TokenIssuer:
    params: dict[str, object] = {"issuer": "gridpilot", "audience": "gridpilot"}
    params.update(kw)
    return TokenIssuer(KeySet.load_or_create(central.keys_dir), **params)  # type: ignore[arg-type]


def _submit_with(central: CentralHandle, metadata: tuple[tuple[str, str], ...] | None) -> str:
    """SubmitJobs with this metadata (on a channel without a token source) must be refused;
    the job list seen by an administrator stays empty."""
    with central.sync_channel(None) as channel:
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        details = refused(
            lambda: jobs.SubmitJobs(
                jobs_pb2.SubmitJobsRequest(jobs=[spec()]), metadata=metadata, timeout=10
            ),
            U,
        )
    with central.sync_channel(central.admin_token()) as channel:
        listed = jobs_pb2_grpc.JobServiceStub(channel).ListJobs(
            jobs_pb2.ListJobsRequest(), timeout=10
        )
        assert list(listed.jobs) == []
    return details


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


def test_probes_need_no_token(central: CentralHandle) -> None:
    with central.sync_channel(None) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="gridpilot.v1.JobService"), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_no_token(central: CentralHandle) -> None:
    assert "no token" in _submit_with(central, None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Basic YWxpY2U6c2VjcmV0", "malformed authorization metadata"),
        ("Bearer ", "malformed authorization metadata"),
        ("Bearer not.a.jwt", "(malformed)"),
        ("Bearer eyJhbGciOiJFZERTQSJ9.e30.c2ln", "(missing_claim)"),
    ],
    ids=["basic", "empty", "not-jwt", "no-claims"],
)
def test_malformed_token(central: CentralHandle, value: str, message: str) -> None:
    assert message in _submit_with(central, ((AUTHORIZATION_KEY, value),))


def test_token_of_another_keyset(central: CentralHandle, tmp_path: Path) -> None:
    other = TokenIssuer(
        KeySet.load_or_create(tmp_path / "other-keys"), issuer="gridpilot", audience="gridpilot"
    )
    token, _ = other.issue(sub="alice", role=Role.USER, group="belle_user", lifetime=600)
    assert "(unknown_key)" in _submit_with(central, _bearer(token))


def test_wrong_signature_with_central_key_id(central: CentralHandle, tmp_path: Path) -> None:
    """A forger who knows central's key id but not its key."""
    _, claims = _issuer(central).issue(
        sub="alice", role=Role.USER, group="belle_user", lifetime=600
    )
    kid = KeySet.load_or_create(central.keys_dir).current().kid
    forger = KeySet.load_or_create(tmp_path / "forger").current().private_key
    forged = jwt.encode(
        msgspec.to_builtins(claims), forger, algorithm="EdDSA", headers={"kid": kid}
    )
    assert "(bad_signature)" in _submit_with(central, _bearer(forged))


def test_wrong_audience_and_issuer(central: CentralHandle) -> None:
    token, _ = _issuer(central, audience="another-service").issue(
        sub="alice", role=Role.USER, group="belle_user", lifetime=600
    )
    assert "(wrong_audience)" in _submit_with(central, _bearer(token))
    token, _ = _issuer(central, issuer="https://elsewhere").issue(
        sub="alice", role=Role.USER, group="belle_user", lifetime=600
    )
    assert "(wrong_issuer)" in _submit_with(central, _bearer(token))


@pytest.mark.parametrize(("shift", "reason"), [(-7200.0, "(expired)"), (3600.0, "(not_yet_valid)")])
def test_expired_and_not_yet_valid(central: CentralHandle, shift: float, reason: str) -> None:
    clock: Callable[[], float] = lambda: time.time() + shift  # noqa: E731
    token, _ = _issuer(central, clock=clock).issue(
        sub="alice", role=Role.USER, group="belle_user", lifetime=600
    )
    assert reason in _submit_with(central, _bearer(token))


def test_revoked_token(central: CentralHandle) -> None:
    token = central.user_token("mallory")
    with central.sync_channel(token) as channel:
        me = auth_pb2_grpc.AuthServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)
    assert me.subject == "mallory"
    with central.sync_channel(central.admin_token()) as channel:
        admin_pb2_grpc.AdminServiceStub(channel).Revoke(
            admin_pb2.RevokeRequest(jti=me.jti, reason="leaked"), timeout=10
        )
    details = _submit_with(central, _bearer(token))
    assert "(revoked)" in details
    assert "leaked" in details


def test_replayed_registration_token(central: CentralHandle) -> None:
    token = central.registration_token()
    with central.sync_channel(token) as channel:
        pilots = pilots_pb2_grpc.PilotServiceStub(channel)

        def register(pilot_id: str) -> pilots_pb2.RegisterPilotResponse:
            return pilots.RegisterPilot(
                pilots_pb2.RegisterPilotRequest(pilot_id=pilot_id, resources=resources()),
                timeout=10,
            )

        first = register("replay-1")
        assert first.pilot_id == "replay-1"
        assert first.pilot_token
        details = refused(lambda: register("replay-2"), U)
        assert "registration token already used" in details
    with central.sync_channel(central.admin_token()) as channel:
        listed = sitedirectors_pb2_grpc.SiteDirectorServiceStub(channel).ListPilots(
            sitedirectors_pb2.ListPilotsRequest(), timeout=10
        )
        assert "replay-2" not in {p.pilot_id for p in listed.pilots}
