"""The benchmark's jobs: `queues` requirement shapes over `sites` sites and `groups` groups.

Shape i belongs to group i % groups (one owner per group and shape family), targets one site
(every tenth shape runs anywhere), and asks for one of three CPU times, so pilots of each site
find a handful of task queues through the matcher's indexes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from gridpilot.bench.central_proc import group_name, site_name
from gridpilot.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc

CPU_TIMES = (3_000, 30_000, 80_000)
PROJECT = "bench"
SUBMIT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Shape:
    group: str
    owner: str
    site: str
    cpu_time: int
    priority: int


def shapes(queues: int, sites: int, groups: int) -> list[Shape]:
    out: list[Shape] = []
    for i in range(queues):
        group = group_name(i % groups)
        out.append(
            Shape(
                group=group,
                owner=f"{group}_user{(i // groups) % 2}",
                site="" if i % 10 == 9 else site_name(i % sites),
                cpu_time=CPU_TIMES[i % len(CPU_TIMES)],
                priority=i % 11,
            )
        )
    return out


def spec(shape: Shape, index: int) -> common_pb2.JobSpec:
    return common_pb2.JobSpec(
        project=PROJECT,
        job_name=f"j{index}",
        release="release-08-00-00",
        steering_file="steer.py",
        cpu_time=shape.cpu_time,
        priority=shape.priority,
        job_type="User",
        sites=[shape.site] if shape.site else [],
    )


def batches(
    all_shapes: list[Shape], total: int, batch_size: int, start: int = 0
) -> Iterator[tuple[Shape, list[common_pb2.JobSpec]]]:
    """`total` jobs spread evenly over the shapes, as (shape, specs) batches of one owner."""
    per_shape, extra = divmod(total, len(all_shapes))
    index = start
    for number, shape in enumerate(all_shapes):
        count = per_shape + (1 if number < extra else 0)
        while count > 0:
            size = min(count, batch_size)
            yield shape, [spec(shape, index + k) for k in range(size)]
            index += size
            count -= size


class Submitter:
    """SubmitJobs through one TLS channel, as each shape's owner."""

    def __init__(self, channel: grpc.Channel, tokens: dict[str, str]) -> None:
        self._stub = jobs_pb2_grpc.JobServiceStub(channel)
        # owner -> token (its group is in the token).
        self._tokens = tokens

    def submit(self, shape: Shape, specs: list[common_pb2.JobSpec]) -> tuple[int, float]:
        """(jobs accepted, seconds the call took)."""
        started = time.perf_counter()
        response = self._stub.SubmitJobs(
            jobs_pb2.SubmitJobsRequest(jobs=specs),
            metadata=(("authorization", f"Bearer {self._tokens[shape.owner]}"),),
            timeout=SUBMIT_TIMEOUT,
        )
        if len(response.job_ids) != len(specs):
            raise RuntimeError(f"SubmitJobs accepted {len(response.job_ids)} of {len(specs)} jobs")
        return len(response.job_ids), time.perf_counter() - started
