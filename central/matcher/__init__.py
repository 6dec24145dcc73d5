"""The matcher: pure, in memory, no gRPC and no store.

Jobs are grouped into task queues by identical requirements; a pilot's resource description
selects the queues it can serve and gets the best job among their heads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

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
from central.matcher.task_queues import TaskQueues, queue_matches
from central.store.records import WaitingJob


class Matcher(Protocol):
    """What central needs from a matcher; kept small so indexes and fair share can replace
    the implementation without touching callers."""

    def add(
        self, job_id: int, priority: int, owner: str, group: str, requirements: bytes
    ) -> None: ...

    def remove(self, job_id: int) -> bool: ...

    def match(self, resources: Resources) -> int | None: ...

    def count_eligible(self, resources: Resources) -> int: ...

    def rebuild(self, jobs: Iterable[WaitingJob]) -> None: ...

    def set_banned_owners(self, owners: frozenset[str]) -> None: ...

    def __len__(self) -> int: ...


__all__ = [
    "CPU_BUCKETS",
    "Matcher",
    "Requirements",
    "Resources",
    "TaskQueues",
    "cpu_bucket",
    "decode_requirements",
    "encode_requirements",
    "pilot_tags",
    "queue_matches",
    "requirements_from_spec",
]
