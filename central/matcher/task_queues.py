"""In-memory task queues: waiting job ids grouped by identical requirements.

A pilot is matched against queues, never against jobs. Its candidate queues come from indexes
(site, tag bitsets) and are memoised per resource description. Among them a group is drawn at
random weighted by its share, then an owner of that group uniformly (the group's share split
among its owners, unless the group shares it), then the owner's highest-priority, oldest job.
RunningLimit and MatchingDelay are held here, once per process.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Iterable, Mapping

from central.matcher.eligible import Eligible, GroupCandidates, build_eligible
from central.matcher.lanes import Lane, LaneRegistry, TaskQueue, clamp_priority
from central.matcher.limiters import Limiters
from central.matcher.policy import MatcherPolicy
from central.matcher.requirements import (
    Requirements,
    Resources,
    decode_requirements,
    pilot_tags,
)
from central.store.records import WaitingJob

# Memoised eligibility is dropped wholesale past this many distinct pilot descriptions.
_CACHE_LIMIT = 20_000
# Empty queues are kept (cheap, and keeps the cache valid) until they dominate.
_EMPTY_QUEUE_SLACK = 256

_CacheKey = tuple[str, str, int, int, int, tuple[str, ...]]


class TaskQueues:
    """The matcher. Not thread-safe: central calls it from its event loop only."""

    def __init__(self, policy: MatcherPolicy | None = None, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._policy = MatcherPolicy()
        self._limiters = Limiters()
        self._queues: dict[Requirements, TaskQueue] = {}
        self._members: dict[int, int] = {}  # job id -> lane index
        self._lanes = LaneRegistry()
        # Site index: queues naming a site, and queues open to any site (ordered, for seeding).
        self._by_site: dict[str, list[TaskQueue]] = {}
        self._any_site: list[TaskQueue] = []
        self._cpu_times: list[int] = []  # sorted distinct queue CPU times
        self._tag_bit: dict[str, int] = {}
        self._cache: dict[_CacheKey, Eligible] = {}
        self._banned_owners: frozenset[str] = frozenset()
        if policy is not None:
            self.configure(policy)

    # --- content -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._members

    @property
    def queue_count(self) -> int:
        """Task queues holding at least one waiting job."""
        return sum(1 for q in self._queues.values() if q.live)

    def add(self, job_id: int, priority: int, owner: str, group: str, requirements: bytes) -> None:
        """Queue a waiting job. `requirements` is the encoded task-queue key."""
        self.add_key(job_id, priority, owner, group, decode_requirements(requirements))

    def add_key(self, job_id: int, priority: int, owner: str, group: str, tq: Requirements) -> None:
        """Queue a waiting job under a decoded key. The key carries owner and group (they are
        part of the task queue's identity); the arguments are accepted for symmetry."""
        del owner, group
        if job_id in self._members:
            self.remove(job_id)
        lane = self._queue(tq).lane(clamp_priority(priority), self._lanes)
        lane.ids.append(job_id)
        lane.live += 1
        lane.queue.live += 1
        self._members[job_id] = lane.index

    def remove(self, job_id: int) -> bool:
        """Forget a job (killed, deleted, matched elsewhere); False if it was not queued."""
        index = self._members.pop(job_id, None)
        if index is None:
            return False
        self._lanes.get(index).after_remove(self._members)
        return True

    def rebuild(self, jobs: Iterable[WaitingJob]) -> None:
        """Replace the whole content, e.g. from the store's waiting jobs at start."""
        self._clear()
        for job in jobs:
            self.add(job.job_id, job.priority, job.owner, job.group, job.requirements)

    def rebuild_compact(
        self, rows: Iterable[tuple[int, int, int]], queues: Mapping[int, Requirements]
    ) -> None:
        """Replace the whole content from (job_id, priority, tq_id) rows and the queues' keys,
        without decoding anything per job (fast restart)."""
        self._clear()
        by_tq = {tq_id: self._queue(key) for tq_id, key in queues.items()}
        lanes: dict[int, Lane] = {}
        members = self._members
        for job_id, priority, tq_id in rows:
            # Distinct for any 32-bit priority; clamped only when a lane is first looked up.
            slot = (tq_id << 32) + priority
            lane = lanes.get(slot)
            if lane is None:
                queue = by_tq.get(tq_id)
                if queue is None:
                    raise ValueError(f"job {job_id} names unknown task queue {tq_id}")
                lane = lanes[slot] = queue.lane(clamp_priority(priority), self._lanes)
            previous = members.get(job_id)
            if previous is not None:
                self._lanes.get(previous).live -= 1
            members[job_id] = lane.index
            lane.ids.append(job_id)
            lane.live += 1
        for queue in self._queues.values():
            queue.live = sum(lane.live for lane in queue.lanes)

    def _clear(self) -> None:
        self._queues.clear()
        self._members = {}
        self._lanes.clear()
        self._by_site.clear()
        self._any_site.clear()
        self._cpu_times.clear()
        self._cache.clear()

    def _queue(self, key: Requirements) -> TaskQueue:
        queue = self._queues.get(key)
        if queue is not None:
            return queue
        if len(self._queues) > 2 * self.queue_count + _EMPTY_QUEUE_SLACK:
            self._drop_empty_queues()
        bits = 0
        for tag in key.tags:
            bit = self._tag_bit.get(tag)
            if bit is None:
                bit = self._tag_bit[tag] = 1 << len(self._tag_bit)
            bits |= bit
        queue = self._queues[key] = TaskQueue(key, bits)
        self._index(queue)
        self._cache.clear()
        return queue

    def _index(self, queue: TaskQueue) -> None:
        key = queue.key
        if key.sites:
            for site in key.sites:
                self._by_site.setdefault(site, []).append(queue)
        else:
            self._any_site.append(queue)
        index = bisect.bisect_left(self._cpu_times, key.cpu_time)
        if index == len(self._cpu_times) or self._cpu_times[index] != key.cpu_time:
            self._cpu_times.insert(index, key.cpu_time)

    def _drop_empty_queues(self) -> None:
        kept = []
        for queue in self._queues.values():
            if queue.live:
                kept.append(queue)
            else:
                self._lanes.drop(queue)
        self._queues = {q.key: q for q in kept}
        self._by_site.clear()
        self._any_site.clear()
        self._cpu_times.clear()
        for queue in kept:
            self._index(queue)
        self._cache.clear()

    # --- policy ----------------------------------------------------------------------------

    def configure(self, policy: MatcherPolicy) -> None:
        """Apply new shares and limiters at once (reload without restart)."""
        policy.validate()
        self._policy = policy
        self._limiters.configure(policy)
        self._cache.clear()

    @property
    def policy(self) -> MatcherPolicy:
        return self._policy

    def set_banned_owners(self, owners: frozenset[str]) -> None:
        """Jobs of these owners are kept but neither matched nor counted as demand."""
        if owners != self._banned_owners:
            self._banned_owners = owners
            self._cache.clear()

    def release(self, site: str, job_type: str, owner: str, group: str) -> None:
        """A matched job left the active states: it no longer counts against running limits."""
        self._limiters.release(site, job_type, owner, group)

    def load_running(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """Set the running counts from (site, job_type, owner, group) of every active job."""
        self._limiters.load_running(rows)

    def running(self, site: str, attribute: str, value: str) -> int:
        """Active jobs counted at `site` with `attribute` == `value`."""
        return self._limiters.running(site, attribute, value)

    # --- matching --------------------------------------------------------------------------

    def _eligible(self, resources: Resources) -> Eligible:
        # Eligibility depends on CPU time only through which queue CPU times it reaches, so
        # pilots whose time left shrinks between requests keep hitting one cache entry.
        cpu_times = self._cpu_times
        index = bisect.bisect_right(cpu_times, resources.cpu_time_left)
        cpu = cpu_times[index - 1] if index else -1
        key = (
            resources.site,
            resources.platform,
            cpu,
            resources.cores,
            resources.memory_mb // 1024,
            resources.tags,
        )
        eligible = self._cache.get(key)
        if eligible is None:
            eligible = self._compute_eligible(resources)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = eligible
        return eligible

    def _compute_eligible(self, resources: Resources) -> Eligible:
        bits = 0
        tag_bit = self._tag_bit
        for tag in pilot_tags(resources):
            bit = tag_bit.get(tag)
            if bit is not None:
                bits |= bit
        candidates = [*self._by_site.get(resources.site, ()), *self._any_site]
        return build_eligible(candidates, resources, bits, self._banned_owners, self._policy)

    def count_eligible(self, resources: Resources) -> int:
        """Waiting jobs a pilot with these resources could run (site directors' demand)."""
        return sum(q.live for q in self._eligible(resources).queues)

    def match(self, resources: Resources, now: float | None = None) -> int | None:
        """Take a job the pilot can run out of the queues (fair share, priority, limiters)."""
        eligible = self._eligible(resources)
        groups = eligible.groups
        if not groups:
            return None
        site = resources.site
        limited = self._limiters.site_limited(site)
        if now is None:
            now = time.time() if limited else 0.0
        total = eligible.total_weight
        rng = self._rng
        while True:
            if total > 0:
                point = rng.random() * total
                group = groups[-1]
                for candidate in groups:
                    point -= candidate.weight
                    if point < 0:
                        group = candidate
                        break
            else:
                group = groups[rng.randrange(len(groups))]
            lane = self._pick_in_group(group, site, limited, now)
            if lane is not None:
                break
            if groups is eligible.groups:
                groups = list(groups)
            groups.remove(group)
            total -= group.weight
            if not groups:
                return None
        job_id = lane.peek(self._members)
        if job_id is None:  # pragma: no cover - a live lane always holds a live id
            raise RuntimeError("task queue lane lost track of its jobs")
        del self._members[job_id]
        lane.after_pop()
        key = lane.queue.key
        self._limiters.matched(site, key.job_type, key.owner, key.group, now)
        return job_id

    def _pick_in_group(
        self, group: GroupCandidates, site: str, limited: bool, now: float
    ) -> Lane | None:
        buckets = group.buckets
        if len(buckets) == 1:
            return self._best_lane(buckets[0], site, limited, now)
        lane = self._best_lane(buckets[self._rng.randrange(len(buckets))], site, limited, now)
        if lane is not None:
            return lane
        # That owner has nothing for this pilot: choose again among owners that do.
        lanes = [
            found
            for bucket in buckets
            if (found := self._best_lane(bucket, site, limited, now)) is not None
        ]
        return lanes[self._rng.randrange(len(lanes))] if lanes else None

    def _best_lane(
        self, bucket: list[TaskQueue], site: str, limited: bool, now: float
    ) -> Lane | None:
        """The owner's highest-priority lane; among equals, the one with the oldest job."""
        best: Lane | None = None
        best_head = 0
        members = self._members
        for queue in bucket:
            if not queue.live:
                continue
            if limited:
                key = queue.key
                if self._limiters.blocked(site, key.job_type, key.owner, key.group, now):
                    continue
            lane = queue.top()
            if lane is None:
                continue
            if best is None or lane.priority > best.priority:
                best, best_head = lane, -1
            elif lane.priority == best.priority:
                if best_head < 0:
                    best_head = best.peek(members) or 0
                head = lane.peek(members) or 0
                if head < best_head:
                    best, best_head = lane, head
        return best
