"""The compact storage of waiting job ids: one FIFO lane per task queue and priority.

A lane is an array of 8-byte job ids with a head index. Removal is lazy: the matcher's member
map (job id -> lane index) is the truth, and an id in a lane whose member entry points elsewhere
(or nowhere) is stale and skipped. This keeps a waiting job at one array slot plus one dict
entry. The map's values are the lanes' shared index ints rather than the lanes themselves: a
dict holding only ints is not tracked by the garbage collector, so millions of waiting jobs add
nothing to a full collection's pause.
"""

from __future__ import annotations

from array import array

from central.matcher.requirements import Requirements

MIN_PRIORITY = 0
MAX_PRIORITY = 10

# Compact a lane when stale ids outnumber live ones by this much (amortised O(1) per removal).
_SLACK = 64


def clamp_priority(priority: int) -> int:
    return MIN_PRIORITY if priority < MIN_PRIORITY else min(priority, MAX_PRIORITY)


class Lane:
    __slots__ = ("head", "ids", "index", "live", "priority", "queue")

    def __init__(self, queue: TaskQueue, priority: int, index: int) -> None:
        self.queue = queue
        self.index = index
        self.priority = priority
        self.ids = array("q")
        self.head = 0
        self.live = 0

    def peek(self, members: dict[int, int]) -> int | None:
        """The oldest live job id, dropping stale ids in front of it."""
        ids = self.ids
        head = self.head
        end = len(ids)
        index = self.index
        while head < end:
            job_id = ids[head]
            if members.get(job_id) == index:
                self.head = head
                return job_id
            head += 1
        self.ids = array("q")
        self.head = 0
        return None

    def after_pop(self) -> None:
        """Account for the job at the head having been taken (its member entry is gone)."""
        self.head += 1
        self.live -= 1
        self.queue.live -= 1
        if self.live == 0:
            self.ids = array("q")
            self.head = 0
        elif self.head > 4096 and self.head * 2 > len(self.ids):
            del self.ids[: self.head]
            self.head = 0

    def after_remove(self, members: dict[int, int]) -> None:
        """Account for a member having been dropped anywhere in the lane."""
        self.live -= 1
        self.queue.live -= 1
        if self.live == 0:
            self.ids = array("q")
            self.head = 0
        elif len(self.ids) - self.head > 2 * self.live + _SLACK:
            ids = self.ids
            self.ids = array("q", (j for j in ids[self.head :] if members.get(j) == self.index))
            self.head = 0


class TaskQueue:
    """Jobs with identical requirements, one lane per priority (highest first)."""

    __slots__ = ("key", "lanes", "live", "tag_bits")

    def __init__(self, key: Requirements, tag_bits: int) -> None:
        self.key = key
        self.tag_bits = tag_bits
        self.lanes: list[Lane] = []
        self.live = 0

    def lane(self, priority: int, registry: LaneRegistry) -> Lane:
        for position, lane in enumerate(self.lanes):
            if lane.priority == priority:
                return lane
            if lane.priority < priority:
                created = registry.create(self, priority)
                self.lanes.insert(position, created)
                return created
        created = registry.create(self, priority)
        self.lanes.append(created)
        return created

    def top(self) -> Lane | None:
        """The highest-priority lane holding a live job."""
        for lane in self.lanes:
            if lane.live:
                return lane
        return None


class LaneRegistry:
    """Lanes by index; indexes of dropped lanes are reused."""

    def __init__(self) -> None:
        self.lanes: list[Lane | None] = []
        self._free: list[int] = []

    def create(self, queue: TaskQueue, priority: int) -> Lane:
        if self._free:
            index = self._free.pop()
            lane = self.lanes[index] = Lane(queue, priority, index)
        else:
            lane = Lane(queue, priority, len(self.lanes))
            self.lanes.append(lane)
        return lane

    def drop(self, queue: TaskQueue) -> None:
        for lane in queue.lanes:
            self.lanes[lane.index] = None
            self._free.append(lane.index)

    def get(self, index: int) -> Lane:
        lane = self.lanes[index]
        if lane is None:  # pragma: no cover - members only point at lanes of live queues
            raise RuntimeError(f"lane {index} was dropped while holding jobs")
        return lane

    def clear(self) -> None:
        self.lanes.clear()
        self._free.clear()
