"""DataService: storage elements, the replica catalog, datasets and failover requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from central.logic import data
from central.logic.access import (
    check_job_token,
    check_job_visible,
    check_replica_registrations,
)
from central.logic.identity import require_caller
from central.rpc import convert
from central.store.records import FileRecord, NewFailoverRequest
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
            storage_elements=[convert.storage_element(se) for se in self.c.ses.all()]
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
        )
        request_id = await data.add_failover_request(c.store, c.ses, new, c.clock())
        c.wake_failover()
        return data_pb2.AddFailoverRequestResponse(request_id=request_id)

    async def ListFailoverRequests(
        self, request: data_pb2.ListFailoverRequestsRequest, context: Context
    ) -> data_pb2.ListFailoverRequestsResponse:
        await check_job_visible(self.c.store, require_caller(), request.job_id, "failover requests")
        found = await data.list_failover_requests(self.c.store, request.job_id, request.status)
        return data_pb2.ListFailoverRequestsResponse(
            requests=[convert.failover_request(r) for r in found]
        )
