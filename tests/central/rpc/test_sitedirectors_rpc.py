from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gridpilot.v1 import common_pb2, pilots_pb2, sitedirectors_pb2
from tests.central.rpc.pilot_helpers import register, request_job, resources
from tests.central.rpc.test_jobs_rpc import spec, submit
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import Env, inprocess_central, run

SD = sitedirectors_pb2


async def states(env: Env) -> dict[str, int]:
    listed = await env.directors.ListPilots(SD.ListPilotsRequest(site=SITE))
    return {p.pilot_id: p.state for p in listed.pilots}


def test_record_update_list_never_backwards(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            records = [
                SD.PilotRecord(
                    pilot_id=f"p{i}", site=SITE, ce=CE, queue=QUEUE, backend="local", director="d1"
                )
                for i in range(3)
            ]
            await env.directors.RecordPilots(SD.RecordPilotsRequest(pilots=records))
            assert set((await states(env)).values()) == {common_pb2.PILOT_STATE_SUBMITTED}
            await register(env, "p0")  # central moves p0 to Running
            await env.directors.UpdatePilots(
                SD.UpdatePilotsRequest(
                    updates=[
                        # Backwards for p0 (Running -> Waiting): refused.
                        SD.PilotUpdate(pilot_id="p0", state=common_pb2.PILOT_STATE_WAITING),
                        SD.PilotUpdate(pilot_id="p1", state=common_pb2.PILOT_STATE_WAITING),
                        SD.PilotUpdate(
                            pilot_id="p2",
                            state=common_pb2.PILOT_STATE_FAILED,
                            status_reason="held",
                            log_tail="x" * 100_000,
                        ),
                        SD.PilotUpdate(pilot_id="unknown", state=common_pb2.PILOT_STATE_DONE),
                    ]
                )
            )
            assert await states(env) == {
                "p0": common_pb2.PILOT_STATE_RUNNING,
                "p1": common_pb2.PILOT_STATE_WAITING,
                "p2": common_pb2.PILOT_STATE_FAILED,
            }
            # A final pilot stays final.
            await env.directors.UpdatePilots(
                SD.UpdatePilotsRequest(
                    updates=[SD.PilotUpdate(pilot_id="p2", state=common_pb2.PILOT_STATE_RUNNING)]
                )
            )
            listed = await env.directors.ListPilots(
                SD.ListPilotsRequest(states=[common_pb2.PILOT_STATE_FAILED])
            )
            assert [p.pilot_id for p in listed.pilots] == ["p2"]
            assert listed.pilots[0].status_reason == "held"
            assert len(listed.pilots[0].log_tail) == 64 * 1024
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.directors.RecordPilots(
                    SD.RecordPilotsRequest(pilots=[SD.PilotRecord(site=SITE)])
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    run(body())


def test_update_sets_reference_and_empty_keeps_it(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            record = SD.PilotRecord(pilot_id="p0", site=SITE, ce=CE, queue=QUEUE, director="d1")
            await env.directors.RecordPilots(SD.RecordPilotsRequest(pilots=[record]))

            async def reference() -> str:
                listed = await env.directors.ListPilots(SD.ListPilotsRequest(director="d1"))
                (pilot,) = listed.pilots
                return pilot.reference

            assert await reference() == ""
            await env.directors.UpdatePilots(
                SD.UpdatePilotsRequest(updates=[SD.PilotUpdate(pilot_id="p0", reference="1234")])
            )
            assert await reference() == "1234"
            # A state update without a reference keeps the stored one, even when the state
            # change itself is refused (Running -> Waiting after registration).
            await register(env, "p0")
            await env.directors.UpdatePilots(
                SD.UpdatePilotsRequest(
                    updates=[SD.PilotUpdate(pilot_id="p0", state=common_pb2.PILOT_STATE_WAITING)]
                )
            )
            assert await reference() == "1234"
            await env.directors.UpdatePilots(
                SD.UpdatePilotsRequest(
                    updates=[
                        SD.PilotUpdate(
                            pilot_id="p0", state=common_pb2.PILOT_STATE_WAITING, reference="99"
                        )
                    ]
                )
            )
            assert await reference() == "99"
            assert (await states(env))["p0"] == common_pb2.PILOT_STATE_RUNNING

    run(body())


def test_pilot_demand(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec(), spec(), spec(number_of_processors=8), spec(cpu_time=10**6))
            await env.directors.RecordPilots(
                SD.RecordPilotsRequest(
                    pilots=[
                        SD.PilotRecord(pilot_id=f"p{i}", site=SITE, ce=CE, queue=QUEUE)
                        for i in range(3)
                    ]
                )
            )
            await register(env, "p0")
            # p0 finds a job, then nothing more fits it: it is idle.
            assert await request_job(env, "p0") is not None
            assert await request_job(env, "p0", cpu_time_left=100) is None
            await env.central.heartbeats.flush(env.central.clock())
            queue = resources(cores=4)
            reply = await env.directors.GetPilotDemand(SD.GetPilotDemandRequest(queues=[queue]))
            (demand,) = reply.demands
            assert demand.queue == QUEUE
            assert demand.eligible_jobs == 1  # job 2; not the 8-core one nor the long one
            assert demand.pilots_submitted == 2
            assert demand.pilots_running == 1
            assert demand.pilots_idle == 1
            assert not demand.blocked
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.directors.GetPilotDemand(
                    SD.GetPilotDemandRequest(queues=[resources(site="NOWHERE")])
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    run(body())


def test_banned_site_is_blocked_and_gets_no_job(tmp_path: Path) -> None:
    async def body() -> None:
        overrides = {
            "sites": [
                {"name": SITE, "ces": [{"name": CE, "queues": [QUEUE]}], "banned": True},
            ],
            "storage_elements": [],
            "failover": {"ses": []},
        }
        async with inprocess_central(tmp_path, overrides) as env:
            await submit(env, spec())
            reply = await env.directors.GetPilotDemand(
                SD.GetPilotDemandRequest(queues=[resources()])
            )
            assert reply.demands[0].blocked
            assert reply.demands[0].eligible_jobs == 0
            pilot_id = await register(env)
            assert await request_job(env, pilot_id) is None
            end = pilots_pb2.ReportPilotEndRequest(pilot_id=pilot_id, reason="idle")
            await env.pilots.ReportPilotEnd(end)

    run(body())


def test_registered_pilot_counts_idle_until_its_first_match(tmp_path: Path) -> None:
    """Otherwise a director sees neither a waiting nor an idle pilot and submits one more."""

    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            await submit(env, spec())
            await env.directors.RecordPilots(
                SD.RecordPilotsRequest(
                    pilots=[SD.PilotRecord(pilot_id="p0", site=SITE, ce=CE, queue=QUEUE)]
                )
            )
            await register(env, "p0")

            async def demand() -> SD.QueueDemand:
                await env.central.heartbeats.flush(env.central.clock())
                reply = await env.directors.GetPilotDemand(
                    SD.GetPilotDemandRequest(queues=[resources()])
                )
                return reply.demands[0]

            fresh = await demand()
            assert (fresh.pilots_running, fresh.pilots_idle, fresh.eligible_jobs) == (1, 1, 1)
            assert await request_job(env, "p0") is not None
            busy = await demand()
            assert (busy.pilots_running, busy.pilots_idle, busy.eligible_jobs) == (1, 0, 0)

    run(body())
