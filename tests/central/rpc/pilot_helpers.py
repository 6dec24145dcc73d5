"""Pilot-side calls used by several rpc tests, with the tokens a real pilot would hold.

`register` spends a registration token bound to the pilot's site/CE/queue and keeps the
session token central answers with (`env.pilot_tokens`); later calls for that pilot use it.
"""

from __future__ import annotations

from gridpilot.v1 import common_pb2, pilots_pb2
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import Env, Metadata


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


def pilot_md(env: Env, pilot_id: str) -> Metadata | None:
    """The pilot's session token, or None (the admin default) for a pilot not registered."""
    token = env.pilot_tokens.get(pilot_id)
    return env.bearer(token) if token else None


async def register(env: Env, pilot_id: str = "", **kw: object) -> str:
    offered = resources(**kw)
    token = env.registration_token(site=offered.site, ce=offered.ce, queue=offered.queue)
    reply = await env.pilots.RegisterPilot(
        pilots_pb2.RegisterPilotRequest(
            pilot_id=pilot_id,
            resources=offered,
            node=pilots_pb2.NodeInfo(hostname="wn01", cores=1),
            version="test",
        ),
        metadata=env.bearer(token),
    )
    env.pilot_tokens[reply.pilot_id] = reply.pilot_token
    return reply.pilot_id


async def request_job(env: Env, pilot_id: str, **kw: object) -> pilots_pb2.MatchedJob | None:
    reply = await env.pilots.RequestJob(
        pilots_pb2.RequestJobRequest(pilot_id=pilot_id, resources=resources(**kw)),
        metadata=pilot_md(env, pilot_id),
    )
    return reply.job if reply.HasField("job") else None
