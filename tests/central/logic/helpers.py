"""Collaborators of central.logic on a real SQLite store, with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from central.config import CentralConfig
from central.logic.heartbeats import HeartbeatBuffer
from central.logic.identity import Caller
from central.logic.matching import SlotReleaser
from central.logic.pilot_flow import Assignment, register_pilot, request_job
from central.logic.sessions import SessionRegistry
from central.logic.storage_elements import StorageElements
from central.logic.submission import submit_jobs
from central.logic.transitions import TransitionBatcher
from central.matcher import Resources, TaskQueues
from central.store.sqlite import SqliteStore
from gridpilot.security.claims import Role
from gridpilot.v1 import common_pb2
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import make_config

ALICE = Caller("alice", Role.USER, group="belle_user")
T0 = 1_800_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class World:
    store: SqliteStore
    config: CentralConfig
    matcher: TaskQueues = field(default_factory=TaskQueues)
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    ses: StorageElements = field(default_factory=StorageElements)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.heartbeats = HeartbeatBuffer(self.store)
        self.batcher = TransitionBatcher(self.store)
        # As central wires it: slots of jobs leaving the active states go back to the matcher.
        self.store.set_release_listener(SlotReleaser(self.matcher))

    async def submit(self, count: int = 1, **spec: Any) -> list[int]:
        fields: dict[str, Any] = {"project": "proj", "release": "r1"}
        fields.update(spec)
        specs = [common_pb2.JobSpec(**fields) for _ in range(count)]
        return await submit_jobs(
            self.store, self.matcher, self.config, caller=ALICE, specs=specs, now=self.clock()
        )

    async def submit_specs(self, specs: list[common_pb2.JobSpec]) -> list[int]:
        return await submit_jobs(
            self.store, self.matcher, self.config, caller=ALICE, specs=specs, now=self.clock()
        )

    async def pilot(self, pilot_id: str = "pilot-1") -> str:
        return await register_pilot(
            self.store,
            self.config,
            pilot_id=pilot_id,
            resources=RESOURCES,
            hostname="wn",
            now=self.clock(),
        )

    async def match(self, pilot_id: str = "pilot-1") -> Assignment | None:
        return await request_job(
            self.store,
            self.matcher,
            self.batcher,
            self.config,
            self.ses,
            heartbeats=self.heartbeats,
            pilot_id=pilot_id,
            resources=RESOURCES,
            now=self.clock(),
        )


RESOURCES = Resources(site=SITE, ce=CE, queue=QUEUE, cpu_time_left=86400, cores=1, memory_mb=4096)


@asynccontextmanager
async def world(
    tmp_path: Path,
    overrides: dict[str, Any] | None = None,
    store_class: type[SqliteStore] = SqliteStore,
) -> AsyncIterator[World]:
    config = make_config(tmp_path, overrides)
    store = store_class(tmp_path / "logic.db")
    await store.open()
    try:
        w = World(store=store, config=config)
        await w.ses.sync_from_config(store, config)
        yield w
    finally:
        await store.close()
