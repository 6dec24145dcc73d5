"""Wiring: the `Central` runtime (store, matcher, agents...) and the gRPC server around it.

    central = Central(config)
    await central.start()
    server, port = await create_server(config, central)
    ...
    await stop_server(server)          # grace period, agents, heartbeat flush, store close

`create_server(config)` without a Central creates and starts one, and `stop_server` stops it.
The main port serves TLS with the server certificate of `[security]` (plaintext only when
`security.insecure`, with a warning); with `security.login_listen` a second port on the same
server asks for client certificates (mutual TLS), for users logging in with IssueToken.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import msgspec
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from central.agents import (
    PeriodicAgent,
    failover_agent,
    heartbeat_flusher,
    key_refresh_agent,
    lost_pilots_agent,
    registration_pruner,
    se_probe_agent,
    stalled_jobs_agent,
)
from central.auth.runtime import Security
from central.config import CentralConfig, check_serving
from central.config_matcher import MatcherSection
from central.logic.heartbeats import HeartbeatBuffer
from central.logic.matching import apply_policy, restore_matcher
from central.logic.sessions import SessionRegistry
from central.logic.storage_elements import StorageElements
from central.logic.transitions import TransitionBatcher
from central.matcher import Matcher, TaskQueues
from central.rpc.admin import AdminServicer
from central.rpc.auth import AuthServicer
from central.rpc.data import DataServicer
from central.rpc.interceptor import CentralInterceptor
from central.rpc.jobs import JobServicer
from central.rpc.pilots import PilotServicer
from central.rpc.sandboxes import SandboxServicer
from central.rpc.sitedirectors import SiteDirectorServicer
from central.sandboxes import SandboxStore
from central.store.interface import Store
from central.store.sqlite import SqliteStore
from gridpilot.logs import get_logger
from gridpilot.security.tls import ServerTls
from gridpilot.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    data_pb2,
    data_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    pilots_pb2,
    pilots_pb2_grpc,
    sandboxes_pb2,
    sandboxes_pb2_grpc,
    sitedirectors_pb2,
    sitedirectors_pb2_grpc,
)

log = get_logger(__name__)

DEFAULT_GRACE_SECONDS = 5.0

SERVICE_NAMES: tuple[str, ...] = (
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    pilots_pb2.DESCRIPTOR.services_by_name["PilotService"].full_name,
    sitedirectors_pb2.DESCRIPTOR.services_by_name["SiteDirectorService"].full_name,
    data_pb2.DESCRIPTOR.services_by_name["DataService"].full_name,
    sandboxes_pb2.DESCRIPTOR.services_by_name["SandboxService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)

INSECURE_WARNING = "serving WITHOUT TLS"


def server_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        # Larger messages are refused with RESOURCE_EXHAUSTED before any handler runs.
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Pilots keep their session alive with pings every 30 s; accept them.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
    ]


@dataclass(frozen=True, slots=True)
class AgentPeriods:
    """Periods of the agents whose period is not in the configuration."""

    heartbeat_flush: float = 1.0
    lost_pilots: float = 300.0


class Central:
    """Everything central runs on, started and stopped together."""

    def __init__(
        self,
        config: CentralConfig,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        periods: AgentPeriods | None = None,
    ) -> None:
        self.config = config
        self.data_dir = Path(config.central.data_dir)
        self.store: Store = (
            store if store is not None else SqliteStore(self.data_dir / "central.db")
        )
        self.clock = clock
        self.matcher: Matcher = TaskQueues()
        self.sessions = SessionRegistry()
        self.heartbeats = HeartbeatBuffer(self.store)
        self.batcher = TransitionBatcher(self.store)
        self.ses = StorageElements()
        self._periods = periods or AgentPeriods()
        self._sandboxes: SandboxStore | None = None
        self._security: Security | None = None
        self.agents: dict[str, PeriodicAgent] = {}
        self._started = False

    @property
    def sandboxes(self) -> SandboxStore:
        if self._sandboxes is None:
            raise RuntimeError("central is not started")
        return self._sandboxes

    @property
    def security(self) -> Security:
        if self._security is None:
            raise RuntimeError("central is not started")
        return self._security

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("central is already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._sandboxes = SandboxStore(
            self.data_dir / "sandboxes", self.config.central.sandbox_max_bytes
        )
        self._sandboxes.remove_stale_partials()
        security = Security.create(self.config, clock=self.clock)
        await self.store.open()
        try:
            await security.load(self.store)
            await self.ses.sync_from_config(self.store, self.config)
            waiting = await restore_matcher(self.store, self.matcher, self.config.matcher)
            self.matcher.set_banned_owners(security.bans.banned_users())
        except BaseException:
            await self.store.close()
            raise
        self._security = security
        self._started = True
        self.agents = self._make_agents()
        for agent in self.agents.values():
            agent.start()
        log.info(
            "central.started",
            data_dir=str(self.data_dir),
            waiting_jobs=waiting,
            ses=len(self.ses.all()),
        )

    def _make_agents(self) -> dict[str, PeriodicAgent]:
        clock, p = self.clock, self._periods
        agents = [
            heartbeat_flusher(self.heartbeats, clock=clock, period=p.heartbeat_flush),
            stalled_jobs_agent(
                self.store, self.matcher, self.heartbeats, self.sessions, self.config, clock=clock
            ),
            failover_agent(self.store, self.ses, self.config, clock=clock),
            lost_pilots_agent(self.store, clock=clock, period=p.lost_pilots),
            key_refresh_agent(self.security, period=self.config.security.key_refresh_period),
            registration_pruner(self.store, self.security, clock=clock),
        ]
        if self.config.storage.probe_period > 0:
            agents.append(
                se_probe_agent(
                    self.store, self.ses, clock=clock, period=self.config.storage.probe_period
                )
            )
        return {a.name: a for a in agents}

    def reload_matcher(self, section: MatcherSection) -> None:
        """Apply a new, already validated [matcher] section (fair share, limiters) now."""
        apply_policy(self.matcher, section, reason="reload")
        self.config = msgspec.structs.replace(self.config, matcher=section)

    def wake_failover(self) -> None:
        agent = self.agents.get("failover")
        if agent is not None:
            agent.wake()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.sessions.close_all()
        for agent in self.agents.values():
            await agent.stop()
        try:
            await self.heartbeats.flush(self.clock())
        finally:
            await self.store.close()
        log.info("central.stopped")


# Servers created with their own Central, so stop_server can stop both.
_OWNED: weakref.WeakKeyDictionary[grpc.aio.Server, Central] = weakref.WeakKeyDictionary()
# The mutual-TLS login port of each server that serves one.
_LOGIN_PORTS: weakref.WeakKeyDictionary[grpc.aio.Server, int] = weakref.WeakKeyDictionary()
# Each server's health service, to report NOT_SERVING as soon as a stop begins.
_HEALTH: weakref.WeakKeyDictionary[grpc.aio.Server, health.aio.HealthServicer] = (
    weakref.WeakKeyDictionary()
)


def _add_ports(server: grpc.aio.Server, config: CentralConfig) -> tuple[int, int | None]:
    """The main port (TLS, or plaintext when insecure) and the optional login port."""
    sec = config.security
    listen = config.central.listen
    if sec.insecure:
        log.warning("central.insecure", message=INSECURE_WARNING, listen=listen)
        port = server.add_insecure_port(listen)
    else:
        tls = ServerTls(cert=Path(sec.tls_cert), key=Path(sec.tls_key))
        port = server.add_secure_port(listen, tls.credentials())
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    if not sec.login_listen:
        return port, None
    login_tls = ServerTls(
        cert=Path(sec.tls_cert),
        key=Path(sec.tls_key),
        ca=Path(sec.tls_client_ca),
        require_client_cert=True,
    )
    login_port = server.add_secure_port(sec.login_listen, login_tls.credentials())
    if login_port == 0:
        raise OSError(f"cannot listen on {sec.login_listen} (security.login_listen)")
    return port, login_port


async def create_server(
    config: CentralConfig, central: Central | None = None
) -> tuple[grpc.aio.Server, int]:
    """A started gRPC server on config.central.listen (port 0 picks one); returns it and the port.

    Without `central`, a Central is created and started here and stopped by `stop_server`.
    The login port, when configured, is `login_port(server)`.
    """
    check_serving(config)
    owned = central is None
    if central is None:
        central = Central(config)
        await central.start()
    try:
        server = grpc.aio.server(
            interceptors=[CentralInterceptor(central.security)],
            options=server_options(config.security.max_message_bytes),
        )
        jobs_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(central), server)
        pilots_pb2_grpc.add_PilotServiceServicer_to_server(PilotServicer(central), server)
        sitedirectors_pb2_grpc.add_SiteDirectorServiceServicer_to_server(
            SiteDirectorServicer(central), server
        )
        data_pb2_grpc.add_DataServiceServicer_to_server(DataServicer(central), server)
        sandboxes_pb2_grpc.add_SandboxServiceServicer_to_server(SandboxServicer(central), server)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(central), server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(central), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        port, login = _add_ports(server, config)
        await server.start()
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        if owned:
            await central.stop()
        raise
    if owned:
        _OWNED[server] = central
    _HEALTH[server] = health_servicer
    if login is not None:
        _LOGIN_PORTS[server] = login
    log.info(
        "central.listening",
        listen=config.central.listen,
        port=port,
        login_port=login or 0,
        tls=not config.security.insecure,
    )
    return server, port


def login_port(server: grpc.aio.Server) -> int | None:
    """The mutual-TLS login port of a server made by create_server, if it serves one."""
    return _LOGIN_PORTS.get(server)


async def stop_server(
    server: grpc.aio.Server, grace: float = DEFAULT_GRACE_SECONDS, central: Central | None = None
) -> None:
    """Stop taking calls, let running ones finish for `grace` seconds, then stop central."""
    central = central or _OWNED.pop(server, None)
    health_servicer = _HEALTH.pop(server, None)
    if health_servicer is not None:
        await health_servicer.enter_graceful_shutdown()
    if central is not None:
        # Session streams end first, so the grace period is not spent waiting on them.
        central.sessions.close_all()
    await server.stop(grace)
    if central is not None:
        await central.stop()


@dataclass(frozen=True, slots=True)
class RunningCentral:
    central: Central
    server: grpc.aio.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def login_port(self) -> int | None:
        return login_port(self.server)


@asynccontextmanager
async def serving(
    config: CentralConfig,
    *,
    clock: Callable[[], float] = time.time,
    periods: AgentPeriods | None = None,
    grace: float = 1.0,
) -> AsyncIterator[RunningCentral]:
    """Central and its server for the duration of a block (in-process tests, tools)."""
    central = Central(config, clock=clock, periods=periods)
    await central.start()
    try:
        server, port = await create_server(config, central)
    except BaseException:
        await central.stop()
        raise
    try:
        yield RunningCentral(central, server, port)
    finally:
        await stop_server(server, grace, central)
