"""SiteDirectorService: pilot demand per queue and pilot records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import msgspec

from central.logic import pilot_records, queue_reports
from central.logic.access import check_pilot_updates, check_sites
from central.logic.identity import require_caller
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
        queues = [convert.resources(q) for q in request.queues]
        check_sites(require_caller(), [q.site for q in queues], "ask for pilot demand")
        demands = await pilot_records.pilot_demand(
            c.store, c.matcher, c.config, queues, site_banned=c.security.bans.site_banned
        )
        return sitedirectors_pb2.GetPilotDemandResponse(
            demands=[convert.queue_demand(d) for d in demands]
        )

    async def RecordPilots(
        self, request: sitedirectors_pb2.RecordPilotsRequest, context: Context
    ) -> sitedirectors_pb2.RecordPilotsResponse:
        pilots = [convert.pilot_record_in(p) for p in request.pilots]
        check_sites(require_caller(), [p.site for p in pilots], "record pilots")
        await pilot_records.record_pilots(self.c.store, pilots, self.c.clock())
        return sitedirectors_pb2.RecordPilotsResponse()

    async def UpdatePilots(
        self, request: sitedirectors_pb2.UpdatePilotsRequest, context: Context
    ) -> sitedirectors_pb2.UpdatePilotsResponse:
        now = self.c.clock()
        await check_pilot_updates(
            self.c.store, require_caller(), [u.pilot_id for u in request.updates]
        )
        await pilot_records.update_pilots(
            self.c.store, [convert.pilot_update(u, now) for u in request.updates]
        )
        return sitedirectors_pb2.UpdatePilotsResponse()

    async def ListPilots(
        self, request: sitedirectors_pb2.ListPilotsRequest, context: Context
    ) -> sitedirectors_pb2.ListPilotsResponse:
        caller = require_caller()
        where = convert.pilot_filter(request)
        if where.site:
            check_sites(caller, [where.site], "list pilots")
        elif not caller.is_admin:
            where = msgspec.structs.replace(where, sites=caller.sites)
        pilots = await pilot_records.list_pilots(self.c.store, where)
        return sitedirectors_pb2.ListPilotsResponse(
            pilots=[convert.pilot_record_out(p) for p in pilots]
        )

    async def ReportQueues(
        self, request: sitedirectors_pb2.ReportQueuesRequest, context: Context
    ) -> sitedirectors_pb2.ReportQueuesResponse:
        await queue_reports.report_queues(
            self.c.store,
            require_caller(),
            [convert.queue_status_in(q) for q in request.queues],
            self.c.clock(),
        )
        return sitedirectors_pb2.ReportQueuesResponse()

    async def ListQueues(
        self, request: sitedirectors_pb2.ListQueuesRequest, context: Context
    ) -> sitedirectors_pb2.ListQueuesResponse:
        queues = await queue_reports.list_queues(
            self.c.store, require_caller(), request.site, request.director
        )
        return sitedirectors_pb2.ListQueuesResponse(
            queues=[convert.queue_status_out(q) for q in queues]
        )
