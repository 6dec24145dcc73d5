"""The matcher: pure, in memory, no gRPC and no store.

Jobs are grouped into task queues by identical requirements; a pilot's resource description
selects the queues it can serve through indexes, and fair share picks the job among them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from central.matcher.eligible import queue_matches
from central.matcher.policy import (
    DEFAULT_SHARE,
    LIMIT_ATTRIBUTES,
    MatcherPolicy,
    MatchingDelay,
    RunningLimit,
)
from central.matcher.requirements import (
    CPU_BUCKETS,
    Requirements,
    Resources,
    cpu_bucket,
    decode_requirements,
    encode_requirements,
    pilot_tags,
    requirements_from_spec,
)
from central.matcher.task_queues import TaskQueues
from central.store.records import WaitingJob


class Matcher(Protocol):
    """What central needs from a matcher; kept small so the implementation can change
    without touching callers."""

    def add(
        self, job_id: int, priority: int, owner: str, group: str, requirements: bytes
    ) -> None: ...

    def add_key(
        self, job_id: int, priority: int, owner: str, group: str, tq: Requirements
    ) -> None: ...

    def remove(self, job_id: int) -> bool: ...

    def match(self, resources: Resources, now: float | None = None) -> int | None: ...

    def count_eligible(self, resources: Resources) -> int: ...

    def rebuild(self, jobs: Iterable[WaitingJob]) -> None: ...

    def rebuild_compact(
        self, rows: Iterable[tuple[int, int, int]], queues: Mapping[int, Requirements]
    ) -> None: ...

    def configure(self, policy: MatcherPolicy) -> None: ...

    def set_banned_owners(self, owners: frozenset[str]) -> None: ...

    def release(self, site: str, job_type: str, owner: str, group: str) -> None: ...

    def load_running(self, rows: Iterable[tuple[str, str, str, str]]) -> None: ...

    def __len__(self) -> int: ...


__all__ = [
    "CPU_BUCKETS",
    "DEFAULT_SHARE",
    "LIMIT_ATTRIBUTES",
    "Matcher",
    "MatcherPolicy",
    "MatchingDelay",
    "Requirements",
    "Resources",
    "RunningLimit",
    "TaskQueues",
    "cpu_bucket",
    "decode_requirements",
    "encode_requirements",
    "pilot_tags",
    "queue_matches",
    "requirements_from_spec",
]
