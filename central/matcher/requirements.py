"""Task-queue keys: the requirements of a job, grouped DIRAC-style.

Jobs with identical requirements share one task queue, so matching looks at queues, never at
individual jobs. The key is stored opaque in the store's `requirements` column (msgpack), and
decoded again when the matcher is rebuilt at start.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import msgspec

from gridpilot.v1 import common_pb2

# DIRAC's CPU-time buckets (seconds); above the last one, whole days.
CPU_BUCKETS: tuple[int, ...] = (360, 1800, 3600, 21600, 43200, 86400, 172800, 259200)
_DAY = 86400

MULTI_PROCESSOR_TAG = "MultiProcessor"


class Requirements(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """The task-queue key. Frozen (hashable) and canonical: tuples are sorted."""

    owner: str
    group: str
    cpu_time: int
    sites: tuple[str, ...] = ()
    banned_sites: tuple[str, ...] = ()
    platform: str = ""
    job_type: str = ""
    tags: tuple[str, ...] = ()


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """What a pilot (or a site director, on behalf of a queue) offers."""

    site: str
    ce: str = ""
    queue: str = ""
    platform: str = ""
    cpu_time_left: int = 0
    cores: int = 1
    memory_mb: int = 0
    tags: tuple[str, ...] = ()


def cpu_bucket(seconds: int) -> int:
    """Round a requested CPU time up to its bucket."""
    for bucket in CPU_BUCKETS:
        if seconds <= bucket:
            return bucket
    return -(-seconds // _DAY) * _DAY


def processor_tags(count: int) -> tuple[str, ...]:
    """A job needing `count` processors carries "<N>Processors" and "MultiProcessor" (N > 1)."""
    if count <= 1:
        return ()
    return (f"{count}Processors", MULTI_PROCESSOR_TAG)


def memory_tag(max_ram_mb: int) -> tuple[str, ...]:
    # Rounded up: a job asking for 1.5 GB must not land on a 1 GB slot.
    if max_ram_mb <= 0:
        return ()
    return (f"{-(-max_ram_mb // 1024)}GB",)


def _canonical(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if v}))


def requirements_from_spec(spec: common_pb2.JobSpec, owner: str, group: str) -> Requirements:
    """The task-queue key of a job; owner and group are the caller's, not the spec's."""
    tags = [*spec.tags, *processor_tags(spec.number_of_processors), *memory_tag(spec.max_ram_mb)]
    return Requirements(
        owner=owner,
        group=group,
        cpu_time=cpu_bucket(max(spec.cpu_time, 0)),
        sites=_canonical(spec.sites),
        banned_sites=_canonical(spec.banned_sites),
        platform=spec.platform,
        job_type=spec.job_type,
        tags=_canonical(tags),
    )


def pilot_tags(resources: Resources) -> frozenset[str]:
    """The tags a pilot offers: its own, plus 1..C "Processors" and 1..M "GB" tags."""
    tags = set(resources.tags)
    tags.update(f"{n}Processors" for n in range(1, resources.cores + 1))
    if resources.cores > 1:
        tags.add(MULTI_PROCESSOR_TAG)
    tags.update(f"{n}GB" for n in range(1, resources.memory_mb // 1024 + 1))
    return frozenset(tags)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Requirements)


def encode_requirements(req: Requirements) -> bytes:
    return _encoder.encode(req)


@functools.lru_cache(maxsize=4096)
def decode_requirements(data: bytes) -> Requirements:
    # Cached: jobs of one task queue share the same bytes, so a rebuild decodes each key once.
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"undecodable task-queue requirements: {exc}") from exc
