"""The door of every RPC, role by role, on a central served over TLS.

For each method and each role, a token of that role calls it with an empty request: a role
missing from the policy table gets PERMISSION_DENIED "role X may not call Y"; an allowed role
gets past the door (whatever the empty request then earns: INVALID_ARGUMENT, NOT_FOUND, an
object-level refusal, or an answer). Empty requests change nothing, which is checked too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from central.rpc.policy import POLICY, Access, access_of, short_name
from central.server import SERVICE_NAMES
from central.store.records import JobFilter
from gridpilot.security.claims import Role
from gridpilot.v1 import admin_pb2
from tests.central.security.helpers import refused_async
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import Env, bearer, inprocess_central, run

P = "user production admin"
# The matrix of the issue, written out independently of central's table: who may knock at
# each door. (Object-level rules are tested in test_scopes.py.)
EXPECTED: dict[str, str] = {
    "JobService.SubmitJobs": P,
    "JobService.ListJobs": P,
    "JobService.GetJob": P + " job",
    "JobService.KillJobs": P,
    "JobService.DeleteJobs": P,
    "JobService.RescheduleJobs": P,
    "JobService.SummarizeProjects": P,
    "PilotService.RegisterPilot": "pilot_registration admin",
    "PilotService.RequestJob": "pilot admin",
    "PilotService.PilotSession": "pilot admin",
    "PilotService.ReportJobStatus": "job pilot admin",
    "PilotService.FinishJob": "job pilot admin",
    "PilotService.ReportPilotEnd": "pilot admin",
    "SiteDirectorService.GetPilotDemand": "site_director admin",
    "SiteDirectorService.RecordPilots": "site_director admin",
    "SiteDirectorService.UpdatePilots": "site_director admin",
    "SiteDirectorService.ListPilots": "site_director admin",
    "SiteDirectorService.ReportQueues": "site_director admin",
    "SiteDirectorService.ListQueues": "site_director admin",
    "DataService.ListStorageElements": P + " site_director pilot job",
    "DataService.SetStorageElementStatus": "admin",
    "DataService.GetReplicas": P + " pilot job",
    "DataService.RegisterReplicas": P + " job",
    "DataService.ListDataset": P + " job",
    "DataService.AddFailoverRequest": "job admin",
    "DataService.ListFailoverRequests": P,
    "DataService.ReportDataAccess": P + " job",
    "DataService.RemoveFiles": P,
    "SandboxService.UploadSandbox": P + " job",
    "SandboxService.DownloadSandbox": P + " job",
    "AuthService.IssueToken": "(self-authenticating)",
    "AuthService.WhoAmI": P + " site_director pilot_registration pilot job",
    "AuthService.MintPilotTokens": "site_director admin",
    "AuthService.IssueServiceToken": "admin",
    "AdminService.Revoke": "admin",
    "AdminService.ListRevocations": "admin",
    "AdminService.SetSiteBanned": "admin",
    "AdminService.SetUserBanned": "admin",
    "AdminService.DrainPilots": "admin",
}


def _expected(name: str) -> frozenset[Role]:
    return frozenset(Role(word) for word in EXPECTED[short_name(name)].split())


def _methods() -> list[MethodDescriptor]:
    pool = descriptor_pool.Default()
    return [m for name in SERVICE_NAMES for m in pool.FindServiceByName(name).methods]


def _full_name(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _tokens(env: Env) -> dict[Role, str]:
    return {
        Role.USER: env.user_token("alice"),
        Role.PRODUCTION: env.user_token("prod", "belle_production"),
        Role.ADMIN: env.admin_token,
        Role.SITE_DIRECTOR: env.director_token([SITE]),
        Role.PILOT_REGISTRATION: env.registration_token(),
        Role.PILOT: env.mint("pilot", "p-m", pilot_id="p-m", site=SITE, ce=CE, queue=QUEUE),
        Role.JOB: env.mint("job", "job:1", job_id=1, attempt=1, pilot_id="p-m"),
    }


async def _call(env: Env, method: MethodDescriptor, token: str) -> grpc.StatusCode | None:
    """Call with an empty request; None when it answered, else the status code."""
    request_class: Any = GetMessageClass(method.input_type)
    response_class: Any = GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }
    name = _full_name(method)
    metadata = bearer(token)
    channel = env.channel
    try:
        if method.client_streaming and method.server_streaming:
            both = channel.stream_stream(name, **kwargs)(iter(()), metadata=metadata, timeout=10)
            async for _ in both:
                pass
        elif method.client_streaming:
            await channel.stream_unary(name, **kwargs)(iter(()), metadata=metadata, timeout=10)
        elif method.server_streaming:
            down = channel.unary_stream(name, **kwargs)(
                request_class(), metadata=metadata, timeout=10
            )
            async for _ in down:
                pass
        else:
            await channel.unary_unary(name, **kwargs)(
                request_class(), metadata=metadata, timeout=10
            )
    except grpc.aio.AioRpcError as exc:
        details = exc.details() or ""
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED and "may not call" in details:
            return exc.code()
        return exc.code() if exc.code() == grpc.StatusCode.UNAUTHENTICATED else None
    return None


def test_every_served_method_has_a_policy_row() -> None:
    served = {_full_name(m) for m in _methods()}
    assert served == set(POLICY), served ^ set(POLICY)
    assert {short_name(n) for n in served} == set(EXPECTED)
    for name, access in POLICY.items():
        if access is Access.SELF_AUTHENTICATING:
            assert EXPECTED[short_name(name)] == "(self-authenticating)"
        else:
            assert access == _expected(name), name
    assert access_of("/grpc.health.v1.Health/Check") is Access.PUBLIC
    assert access_of("/gridpilot.v1.JobService/NoSuchMethod") is None


def test_each_role_passes_exactly_the_doors_of_the_policy(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            tokens = _tokens(env)
            mismatches: list[str] = []
            for method in _methods():
                name = _full_name(method)
                if POLICY[name] is Access.SELF_AUTHENTICATING:
                    continue
                access = _expected(name)
                for role, token in tokens.items():
                    code = await _call(env, method, token)
                    denied = code == grpc.StatusCode.PERMISSION_DENIED
                    assert code != grpc.StatusCode.UNAUTHENTICATED, (name, role)
                    if denied == (role in access):
                        mismatches.append(f"{short_name(name)} as {role.value}: denied={denied}")
            assert mismatches == []
            # Nothing was created, spent or revoked by the empty calls.
            store = env.central.store
            assert await store.list_jobs(JobFilter()) == []
            assert await store.list_revocations() == []
            assert await store.used_registrations(0.0) == {}

    run(body())


def test_refusal_names_the_role_and_the_method(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path) as env:
            details = await refused_async(
                lambda: env.admin.ListRevocations(
                    admin_pb2.ListRevocationsRequest(), metadata=env.as_user("alice")
                ),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert details == "role user may not call AdminService.ListRevocations"

    run(body())
