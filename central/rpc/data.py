"""DataService: storage elements, the replica catalog, datasets and failover requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from central.logic import data
from central.logic.access import (
    check_job_reporter,
    check_job_token,
    check_job_visible,
    check_replica_registrations,
    check_request_owner,
)
from central.logic.identity import require_caller
from central.logic.se_costs import Transfer, record_transfers
from central.rpc import convert
from central.store.records import DEFAULT_PRIORITY, REPLICATE, FileRecord, NewFailoverRequest
from gridpilot.security.claims import Role
from gridpilot.v1 import data_pb2, data_pb2_grpc

if TYPE_CHECKING:
    from central.server import Central

Context = grpc.aio.ServicerContext[Any, Any]


class DataServicer(data_pb2_grpc.DataServiceServicer):
    def __init__(self, central: Central) -> None:
        self.c = central

    async def ListStorageElements(
        self, request: data_pb2.ListStorageElementsRequest, context: Context
    ) -> data_pb2.ListStorageElementsResponse:
        return data_pb2.ListStorageElementsResponse(
            storage_elements=[convert.storage_element(se, self.c.ses) for se in self.c.ses.all()]
        )

    async def SetStorageElementStatus(
        self, request: data_pb2.SetStorageElementStatusRequest, context: Context
    ) -> data_pb2.SetStorageElementStatusResponse:
        # Administrators only (policy table).
        await self.c.ses.set_status(
            self.c.store, request.name, request.read_allowed, request.write_allowed
        )
        return data_pb2.SetStorageElementStatusResponse()

    async def GetReplicas(
        self, request: data_pb2.GetReplicasRequest, context: Context
    ) -> data_pb2.GetReplicasResponse:
        c = self.c
        files = await data.get_replicas(c.store, c.config, c.ses, list(request.lfns), request.site)
        return data_pb2.GetReplicasResponse(files=[convert.file_replicas(f) for f in files])

    async def RegisterReplicas(
        self, request: data_pb2.RegisterReplicasRequest, context: Context
    ) -> data_pb2.RegisterReplicasResponse:
        files = [
            FileRecord(lfn=r.lfn, size=r.size, adler32=r.adler32, ses=(r.se,), job_id=r.job_id)
            for r in request.replicas
        ]
        await check_replica_registrations(
            self.c.store, require_caller(), [(f.lfn, f.job_id) for f in files]
        )
        await data.register_replicas(self.c.store, self.c.ses, files)
        return data_pb2.RegisterReplicasResponse()

    async def ListDataset(
        self, request: data_pb2.ListDatasetRequest, context: Context
    ) -> data_pb2.ListDatasetResponse:
        c = self.c
        files = await data.list_dataset(c.store, c.config, c.ses, request.lpn)
        return data_pb2.ListDatasetResponse(files=[convert.file_replicas(f) for f in files])

    async def AddFailoverRequest(
        self, request: data_pb2.AddFailoverRequestRequest, context: Context
    ) -> data_pb2.AddFailoverRequestResponse:
        c = self.c
        check_job_token(require_caller(), request.job_id, "add failover requests")
        new = NewFailoverRequest(
            job_id=request.job_id,
            lfn=request.lfn,
            source_se=request.source_se,
            target_se=request.target_se,
            priority=request.priority or DEFAULT_PRIORITY[REPLICATE],
        )
        request_id = await data.add_failover_request(c.store, c.ses, new, c.clock())
        c.wake_failover()
        return data_pb2.AddFailoverRequestResponse(request_id=request_id)

    async def ListFailoverRequests(
        self, request: data_pb2.ListFailoverRequestsRequest, context: Context
    ) -> data_pb2.ListFailoverRequestsResponse:
        caller = require_caller()
        ids = list(request.request_ids)
        if not ids or request.job_id:
            await check_job_visible(self.c.store, caller, request.job_id, "failover requests")
        found = await data.list_failover_requests(self.c.store, request.job_id, request.status, ids)
        if ids and not request.job_id:
            check_request_owner(caller, found)
        return data_pb2.ListFailoverRequestsResponse(
            requests=[convert.failover_request(r) for r in found]
        )

    async def ReportDataAccess(
        self, request: data_pb2.ReportDataAccessRequest, context: Context
    ) -> data_pb2.ReportDataAccessResponse:
        c, caller = self.c, require_caller()
        reporter = caller.describe()
        if request.transfers or caller.role is Role.JOB:
            job = await check_job_reporter(c.store, caller, request.job_id)
            reporter = f"job {job.job_id}"
            transfers = [
                Transfer(se=t.se, direction=t.direction, bytes=t.bytes, seconds=t.seconds, ok=t.ok)
                for t in request.transfers
            ]
            await record_transfers(
                c.store, c.ses, c.config, site=job.site, transfers=transfers, now=c.clock()
            )
        suspects = [data.SuspectReport(s.lfn, s.se, s.reason) for s in request.suspects]
        queued = await data.report_suspects(c.store, suspects, reporter, c.clock())
        if queued:
            c.wake_failover()
        return data_pb2.ReportDataAccessResponse(checks_queued=queued)

    async def RemoveFiles(
        self, request: data_pb2.RemoveFilesRequest, context: Context
    ) -> data_pb2.RemoveFilesResponse:
        c = self.c
        removals = await data.remove_files(c.store, require_caller(), list(request.lfns), c.clock())
        if any(r.request_id for r in removals):
            c.wake_failover()
        return data_pb2.RemoveFilesResponse(
            results=[
                data_pb2.FileRemoval(lfn=r.lfn, request_id=r.request_id, error=r.error)
                for r in removals
            ]
        )
