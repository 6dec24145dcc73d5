"""In-memory task queues: waiting job ids grouped by identical requirements.

A pilot is matched against queues, never against jobs: the candidate queues are those whose
requirements the pilot satisfies, and the job given is the best head among them (highest
priority, then oldest). Each queue is a heap with lazy deletion, so add, remove and match cost
O(log n) in the queue's size.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from central.matcher.requirements import (
    Requirements,
    Resources,
    decode_requirements,
    pilot_tags,
)
from central.store.records import WaitingJob


def queue_matches(req: Requirements, resources: Resources, tags: frozenset[str]) -> bool:
    """DIRAC's rule: enough CPU time, site allowed and not banned, platform, every tag offered."""
    if resources.cpu_time_left < req.cpu_time:
        return False
    if req.sites and resources.site not in req.sites:
        return False
    if resources.site in req.banned_sites:
        return False
    if req.platform and req.platform != resources.platform:
        return False
    return all(tag in tags for tag in req.tags)


# Heap entries: (-priority, job_id, token). The token tells a live entry from a stale one left
# behind by remove(), even when the same job is added again later.
_Entry = tuple[int, int, int]


@dataclass
class _TaskQueue:
    key: Requirements
    heap: list[_Entry] = field(default_factory=list)
    live: int = 0

    def head(self, members: dict[int, tuple[Requirements, int]]) -> _Entry | None:
        heap = self.heap
        while heap:
            entry = heap[0]
            if members.get(entry[1]) == (self.key, entry[2]):
                return entry
            heapq.heappop(heap)
        return None


class TaskQueues:
    """The default matcher: task queues scanned per match (fine up to thousands of queues)."""

    def __init__(self) -> None:
        self._queues: dict[Requirements, _TaskQueue] = {}
        # job id -> (queue key, token of its live heap entry)
        self._members: dict[int, tuple[Requirements, int]] = {}
        self._tokens = itertools.count()
        # Owners whose jobs stay queued but are not given out (banned users).
        self._banned_owners: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._members

    @property
    def queue_count(self) -> int:
        return len(self._queues)

    def add(self, job_id: int, priority: int, owner: str, group: str, requirements: bytes) -> None:
        """Queue a waiting job. `requirements` is the encoded key; owner/group are in it too and
        are accepted here so that the interface can grow fair share without changing callers."""
        del owner, group
        self.add_key(job_id, priority, decode_requirements(requirements))

    def add_key(self, job_id: int, priority: int, key: Requirements) -> None:
        if job_id in self._members:
            self.remove(job_id)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _TaskQueue(key)
        token = next(self._tokens)
        self._members[job_id] = (key, token)
        heapq.heappush(queue.heap, (-priority, job_id, token))
        queue.live += 1

    def remove(self, job_id: int) -> bool:
        """Forget a job (killed, deleted, matched elsewhere); False if it was not queued."""
        member = self._members.pop(job_id, None)
        if member is None:
            return False
        queue = self._queues[member[0]]
        queue.live -= 1
        if queue.live == 0:
            del self._queues[member[0]]
        elif len(queue.heap) > 2 * queue.live + 64:
            # Too many stale entries: rebuild the heap from the live ones.
            queue.heap = [e for e in queue.heap if self._members.get(e[1]) == (queue.key, e[2])]
            heapq.heapify(queue.heap)
        return True

    def set_banned_owners(self, owners: frozenset[str]) -> None:
        """Jobs of these owners are kept but neither matched nor counted as demand."""
        self._banned_owners = owners

    def _eligible(self, resources: Resources) -> list[_TaskQueue]:
        tags = pilot_tags(resources)
        banned = self._banned_owners
        return [
            q
            for q in self._queues.values()
            if queue_matches(q.key, resources, tags) and q.key.owner not in banned
        ]

    def match(self, resources: Resources) -> int | None:
        """Take the best job the pilot can run out of the queues, or None."""
        best: _Entry | None = None
        best_queue: _TaskQueue | None = None
        for queue in self._eligible(resources):
            head = queue.head(self._members)
            if head is not None and (best is None or head < best):
                best, best_queue = head, queue
        if best is None or best_queue is None:
            return None
        heapq.heappop(best_queue.heap)
        self.remove(best[1])
        return best[1]

    def count_eligible(self, resources: Resources) -> int:
        """Waiting jobs a pilot with these resources could run (site directors' demand)."""
        return sum(q.live for q in self._eligible(resources))

    def rebuild(self, jobs: Iterable[WaitingJob]) -> None:
        """Replace the whole content, e.g. from the store's waiting jobs at start."""
        self._queues.clear()
        self._members.clear()
        for job in jobs:
            self.add(job.job_id, job.priority, job.owner, job.group, job.requirements)
