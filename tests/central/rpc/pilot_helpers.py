"""Pilot-side calls used by several rpc tests."""

from __future__ import annotations

from gridpilot.v1 import common_pb2, pilots_pb2
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import Env


def resources(**kw: object) -> common_pb2.ResourceDescription:
    fields: dict[str, object] = {
        "site": SITE,
        "ce": CE,
        "queue": QUEUE,
        "cpu_time_left": 86400,
        "cores": 1,
        "memory_mb": 4096,
    }
    fields.update(kw)
    return common_pb2.ResourceDescription(**fields)  # type: ignore[arg-type]


async def register(env: Env, pilot_id: str = "", **kw: object) -> str:
    reply = await env.pilots.RegisterPilot(
        pilots_pb2.RegisterPilotRequest(
            pilot_id=pilot_id,
            resources=resources(**kw),
            node=pilots_pb2.NodeInfo(hostname="wn01", cores=1),
            version="test",
        )
    )
    return reply.pilot_id


async def request_job(env: Env, pilot_id: str, **kw: object) -> pilots_pb2.MatchedJob | None:
    reply = await env.pilots.RequestJob(
        pilots_pb2.RequestJobRequest(pilot_id=pilot_id, resources=resources(**kw))
    )
    return reply.job if reply.HasField("job") else None
