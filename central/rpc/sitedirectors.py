"""SiteDirectorService: pilot demand per queue and pilot records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from central.logic import pilot_records
from central.rpc import convert
from gridpilot.v1 import sitedirectors_pb2, sitedirectors_pb2_grpc

if TYPE_CHECKING:
    from central.server import Central

Context = grpc.aio.ServicerContext[Any, Any]


class SiteDirectorServicer(sitedirectors_pb2_grpc.SiteDirectorServiceServicer):
    def __init__(self, central: Central) -> None:
        self.c = central

    async def GetPilotDemand(
        self, request: sitedirectors_pb2.GetPilotDemandRequest, context: Context
    ) -> sitedirectors_pb2.GetPilotDemandResponse:
        c = self.c
        demands = await pilot_records.pilot_demand(
            c.store, c.matcher, c.config, [convert.resources(q) for q in request.queues]
        )
        return sitedirectors_pb2.GetPilotDemandResponse(
            demands=[convert.queue_demand(d) for d in demands]
        )

    async def RecordPilots(
        self, request: sitedirectors_pb2.RecordPilotsRequest, context: Context
    ) -> sitedirectors_pb2.RecordPilotsResponse:
        await pilot_records.record_pilots(
            self.c.store, [convert.pilot_record_in(p) for p in request.pilots], self.c.clock()
        )
        return sitedirectors_pb2.RecordPilotsResponse()

    async def UpdatePilots(
        self, request: sitedirectors_pb2.UpdatePilotsRequest, context: Context
    ) -> sitedirectors_pb2.UpdatePilotsResponse:
        now = self.c.clock()
        await pilot_records.update_pilots(
            self.c.store, [convert.pilot_update(u, now) for u in request.updates]
        )
        return sitedirectors_pb2.UpdatePilotsResponse()

    async def ListPilots(
        self, request: sitedirectors_pb2.ListPilotsRequest, context: Context
    ) -> sitedirectors_pb2.ListPilotsResponse:
        pilots = await pilot_records.list_pilots(self.c.store, convert.pilot_filter(request))
        return sitedirectors_pb2.ListPilotsResponse(
            pilots=[convert.pilot_record_out(p) for p in pilots]
        )
