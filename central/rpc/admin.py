"""AdminService: revocations, bans and draining pilots (administrators only, policy table)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from central.auth.revocations import RevocationKind
from central.logic import admin
from central.logic.errors import InvalidArgumentError
from central.logic.identity import require_caller
from gridpilot.v1 import admin_pb2, admin_pb2_grpc

if TYPE_CHECKING:
    from central.server import Central

Context = grpc.aio.ServicerContext[Any, Any]

_TARGETS = {
    "jti": RevocationKind.JTI,
    "user": RevocationKind.USER,
    "pilot_id": RevocationKind.PILOT,
    "site_director": RevocationKind.SITE_DIRECTOR,
}


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, central: Central) -> None:
        self.c = central

    async def Revoke(
        self, request: admin_pb2.RevokeRequest, context: Context
    ) -> admin_pb2.RevokeResponse:
        c = self.c
        target = request.WhichOneof("target")
        if target is None:
            raise InvalidArgumentError("revoke: name a jti, user, pilot_id or site_director")
        await admin.revoke(
            c.store,
            c.security,
            kind=_TARGETS[target],
            value=getattr(request, target),
            reason=request.reason,
            by=require_caller().subject,
            now=c.clock(),
        )
        return admin_pb2.RevokeResponse()

    async def ListRevocations(
        self, request: admin_pb2.ListRevocationsRequest, context: Context
    ) -> admin_pb2.ListRevocationsResponse:
        return admin_pb2.ListRevocationsResponse(
            revocations=[
                admin_pb2.Revocation(
                    kind=r.kind, value=r.value, reason=r.reason, created_unix=r.created
                )
                for r in await self.c.store.list_revocations()
            ]
        )

    async def SetSiteBanned(
        self, request: admin_pb2.SetSiteBannedRequest, context: Context
    ) -> admin_pb2.SetSiteBannedResponse:
        c = self.c
        await admin.set_site_banned(
            c.store,
            c.security,
            c.config,
            site=request.site,
            banned=request.banned,
            reason=request.reason,
            by=require_caller().subject,
            now=c.clock(),
        )
        return admin_pb2.SetSiteBannedResponse()

    async def SetUserBanned(
        self, request: admin_pb2.SetUserBannedRequest, context: Context
    ) -> admin_pb2.SetUserBannedResponse:
        c = self.c
        await admin.set_user_banned(
            c.store,
            c.security,
            c.matcher,
            user=request.user,
            banned=request.banned,
            reason=request.reason,
            by=require_caller().subject,
            now=c.clock(),
        )
        return admin_pb2.SetUserBannedResponse()

    async def DrainPilots(
        self, request: admin_pb2.DrainPilotsRequest, context: Context
    ) -> admin_pb2.DrainPilotsResponse:
        drained = await admin.drain_pilots(
            self.c.store, self.c.sessions, pilot_ids=list(request.pilot_ids), site=request.site
        )
        return admin_pb2.DrainPilotsResponse(drained=drained)
