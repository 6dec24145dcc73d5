"""An in-process central (real store, real gRPC server over TLS on 127.0.0.1:0) for async tests.

    def test_x(tmp_path: Path) -> None:
        async def body() -> None:
            async with inprocess_central(tmp_path) as env:
                await env.jobs.SubmitJobs(..., metadata=env.as_user("alice"))
        run(body())

Tokens are minted with central's own signing keys (data_dir/keys), as the offline
`gridpilot admin token issue` does. Calls made without metadata carry an administrator's
token (`env.admin_token`); give `metadata=env.as_user(...)`, `env.as_director(...)` or
`env.bearer(token)` to call as someone else. pytest-asyncio is not used: `run` drives a
coroutine with a hard timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from central.config import CentralConfig, config_from_dict
from central.server import AgentPeriods, Central, login_port, serving
from gridpilot.channel import ClientSecurity, StaticToken
from gridpilot.security.claims import Role
from gridpilot.security.keys import KeySet
from gridpilot.security.tls import ClientTls
from gridpilot.security.tokens import TokenIssuer
from gridpilot.v1 import (
    admin_pb2_grpc,
    auth_pb2_grpc,
    data_pb2_grpc,
    jobs_pb2_grpc,
    pilots_pb2_grpc,
    sandboxes_pb2_grpc,
    sitedirectors_pb2_grpc,
)
from tests.support.bearer import Metadata, bearer, channel_with_default_token
from tests.support.central_process import CE, QUEUE, SITE, default_config, merge
from tests.support.pki import TestPki

T = TypeVar("T")

__all__ = ["Env", "Metadata", "bearer", "inprocess_central", "make_config", "run"]

# Group -> role, as the default [[groups]] say.
GROUP_ROLES = {"belle_user": "user", "belle_production": "production", "belle_admin": "admin"}


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def make_config(tmp_path: Path, overrides: dict[str, Any] | None = None) -> CentralConfig:
    """The default test configuration (see central_process.default_config) with TLS from a
    test PKI under tmp_path/pki, validated."""
    pki = TestPki(tmp_path / "pki")
    tls = {"security": {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}}
    data = merge(merge(default_config(tmp_path), tls), overrides or {})
    for se in data.get("storage_elements", []):
        if se["url"].startswith("file://"):
            Path(se["url"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return config_from_dict(data)


@dataclass
class Env:
    central: Central
    channel: grpc.aio.Channel
    target: str
    pki: TestPki
    issuer: TokenIssuer
    admin_token: str
    jobs: jobs_pb2_grpc.JobServiceAsyncStub
    pilots: pilots_pb2_grpc.PilotServiceAsyncStub
    directors: sitedirectors_pb2_grpc.SiteDirectorServiceAsyncStub
    data: data_pb2_grpc.DataServiceAsyncStub
    sandboxes: sandboxes_pb2_grpc.SandboxServiceAsyncStub
    auth: auth_pb2_grpc.AuthServiceAsyncStub
    admin: admin_pb2_grpc.AdminServiceAsyncStub
    server: grpc.aio.Server
    # Session tokens of the pilots registered through tests/central/rpc/pilot_helpers.
    pilot_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def ca_path(self) -> Path:
        return self.pki.ca_path

    @property
    def login_port(self) -> int | None:
        return login_port(self.server)

    def mint(
        self, role: str, sub: str, *, group: str = "", lifetime: float = 3600, **bindings: Any
    ) -> str:
        token, _ = self.issuer.issue(
            sub=sub, role=Role(role), group=group, lifetime=lifetime, **bindings
        )
        return token

    def user_token(self, user: str, group: str = "belle_user") -> str:
        return self.mint(GROUP_ROLES.get(group, "user"), user, group=group)

    def as_user(self, user: str, group: str = "belle_user") -> Metadata:
        """Bearer metadata of a freshly minted token of `user` in `group`."""
        return bearer(self.user_token(user, group))

    def as_admin(self) -> Metadata:
        return bearer(self.admin_token)

    def director_token(self, sites: list[str], name: str = "director") -> str:
        return self.mint("site_director", name, sites=sites)

    def as_director(self, sites: list[str] | None = None, name: str = "director") -> Metadata:
        return bearer(self.director_token(sites if sites is not None else [SITE], name))

    def registration_token(
        self, site: str = SITE, ce: str = CE, queue: str = QUEUE, director: str = "director"
    ) -> str:
        return self.mint(
            "pilot_registration", director, lifetime=600, site=site, ce=ce, queue=queue
        )

    def as_pilot(self, pilot_id: str) -> Metadata:
        """The session token central gave this pilot at registration."""
        return bearer(self.pilot_tokens[pilot_id])

    @staticmethod
    def bearer(token: str) -> Metadata:
        return bearer(token)

    def client_security(self, token: str | None = None) -> ClientSecurity:
        return ClientSecurity(
            tls=ClientTls(ca=self.pki.ca_path), token=StaticToken(token) if token else None
        )


@asynccontextmanager
async def inprocess_central(
    tmp_path: Path,
    overrides: dict[str, Any] | None = None,
    *,
    clock: Callable[[], float] | None = None,
    periods: AgentPeriods | None = None,
) -> AsyncIterator[Env]:
    config = make_config(tmp_path, overrides)
    kwargs: dict[str, Any] = {"periods": periods}
    if clock is not None:
        kwargs["clock"] = clock
    pki = TestPki(tmp_path / "pki")
    async with serving(config, **kwargs) as running:
        sec = config.security
        issuer_kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        issuer = TokenIssuer(
            KeySet.load_or_create(Path(config.central.data_dir) / "keys"),
            issuer=sec.issuer,
            audience=sec.audience,
            **issuer_kwargs,
        )
        admin_token, _ = issuer.issue(
            sub="admin", role=Role.ADMIN, group="belle_admin", lifetime=3600
        )
        security = ClientSecurity(tls=ClientTls(ca=pki.ca_path))
        channel = channel_with_default_token(running.target, security, admin_token)
        try:
            yield Env(
                central=running.central,
                channel=channel,
                target=running.target,
                pki=pki,
                issuer=issuer,
                admin_token=admin_token,
                jobs=jobs_pb2_grpc.JobServiceStub(channel),
                pilots=pilots_pb2_grpc.PilotServiceStub(channel),
                directors=sitedirectors_pb2_grpc.SiteDirectorServiceStub(channel),
                data=data_pb2_grpc.DataServiceStub(channel),
                sandboxes=sandboxes_pb2_grpc.SandboxServiceStub(channel),
                auth=auth_pb2_grpc.AuthServiceStub(channel),
                admin=admin_pb2_grpc.AdminServiceStub(channel),
                server=running.server,
            )
        finally:
            await channel.close()
