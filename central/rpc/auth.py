"""AuthService: user login (gb2_proxy_init), who-am-I, pilot registration and service tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from central.logic import tokens
from central.logic.identity import current_caller, require_caller
from central.matcher import Resources
from gridpilot.security.tls import peer_common_name
from gridpilot.v1 import auth_pb2, auth_pb2_grpc

if TYPE_CHECKING:
    from central.server import Central

Context = grpc.aio.ServicerContext[Any, Any]


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, central: Central) -> None:
        self.c = central

    async def IssueToken(
        self, request: auth_pb2.IssueTokenRequest, context: Context
    ) -> auth_pb2.IssueTokenResponse:
        c = self.c
        # The interceptor verified a bearer token if there was one; without one, the
        # client certificate of the mutual-TLS login port says who calls.
        caller = current_caller.get()
        token, claims = tokens.issue_user_token(
            c.security,
            c.config,
            caller=caller,
            cert_subject=None if caller is not None else peer_common_name(context),
            group=request.group,
            lifetime=request.lifetime,
        )
        return auth_pb2.IssueTokenResponse(
            token=token,
            subject=claims.sub,
            group=claims.group,
            role=claims.role.value,
            expires_unix=float(claims.exp),
        )

    async def WhoAmI(
        self, request: auth_pb2.WhoAmIRequest, context: Context
    ) -> auth_pb2.WhoAmIResponse:
        caller = require_caller()
        return auth_pb2.WhoAmIResponse(
            subject=caller.subject,
            role=caller.role.value,
            group=caller.group,
            vo=caller.vo,
            expires_unix=caller.expires,
            sites=list(caller.sites),
            jti=caller.jti,
            issuer=caller.issuer,
        )

    async def MintPilotTokens(
        self, request: auth_pb2.MintPilotTokensRequest, context: Context
    ) -> auth_pb2.MintPilotTokensResponse:
        c = self.c
        minted, expires = tokens.mint_pilot_tokens(
            c.security,
            c.config,
            caller=require_caller(),
            resources=Resources(site=request.site, ce=request.ce, queue=request.queue),
            count=request.count,
            lifetime=request.lifetime,
        )
        return auth_pb2.MintPilotTokensResponse(tokens=minted, expires_unix=expires)

    async def IssueServiceToken(
        self, request: auth_pb2.IssueServiceTokenRequest, context: Context
    ) -> auth_pb2.IssueServiceTokenResponse:
        c = self.c
        token, claims = tokens.issue_service_token(
            c.security,
            c.config,
            subject=request.subject,
            role_name=request.role,
            group=request.group,
            sites=list(request.sites),
            lifetime=request.lifetime,
        )
        return auth_pb2.IssueServiceTokenResponse(
            token=token, jti=claims.jti, expires_unix=float(claims.exp)
        )
