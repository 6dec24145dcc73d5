"""Revocations, bans and spent registration tokens survive a central crash and restart."""

from __future__ import annotations

from pathlib import Path

import grpc

from gridpilot.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    pilots_pb2,
    pilots_pb2_grpc,
    sitedirectors_pb2,
    sitedirectors_pb2_grpc,
)
from tests.central.rpc.pilot_helpers import resources
from tests.central.security.helpers import refused, spec
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle, running_central

U = grpc.StatusCode.UNAUTHENTICATED


def _whoami(central: CentralHandle, token: str) -> auth_pb2.WhoAmIResponse:
    with central.sync_channel(token) as channel:
        return auth_pb2_grpc.AuthServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)


def _register(central: CentralHandle, token: str, pilot_id: str) -> None:
    with central.sync_channel(token) as channel:
        pilots_pb2_grpc.PilotServiceStub(channel).RegisterPilot(
            pilots_pb2.RegisterPilotRequest(pilot_id=pilot_id, resources=resources()), timeout=10
        )


def test_security_state_survives_a_crash(tmp_path: Path) -> None:
    with running_central(tmp_path) as central:
        leaked = central.user_token("alice")
        bobs = central.user_token("bob")
        pilot = central.mint("pilot", "p1", pilot_id="p1", site=SITE, ce=CE, queue=QUEUE)
        director = central.director_token([SITE], name="dir-x")
        spent = central.registration_token()
        _register(central, spent, "p-spent")
        with central.sync_channel(central.user_token("eve")) as channel:
            jobs_pb2_grpc.JobServiceStub(channel).SubmitJobs(
                jobs_pb2.SubmitJobsRequest(jobs=[spec()]), timeout=10
            )
        with central.sync_channel(central.admin_token()) as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            admin.Revoke(admin_pb2.RevokeRequest(jti=_whoami(central, leaked).jti), timeout=10)
            admin.Revoke(admin_pb2.RevokeRequest(user="bob"), timeout=10)
            admin.Revoke(admin_pb2.RevokeRequest(pilot_id="p1"), timeout=10)
            admin.Revoke(admin_pb2.RevokeRequest(site_director="dir-x"), timeout=10)
            admin.SetUserBanned(admin_pb2.SetUserBannedRequest(user="eve", banned=True))
            admin.SetSiteBanned(admin_pb2.SetSiteBannedRequest(site=SITE, banned=True))

        central.restart(crash=True)  # SIGKILL: only what was committed before answering

        for token, reason in (
            (leaked, "was revoked"),
            (bobs, "tokens of user bob were revoked"),
            (pilot, "tokens of pilot p1 were revoked"),
            (director, "tokens of site director dir-x were revoked"),
        ):
            assert reason in refused(lambda t=token: _whoami(central, t), U)  # type: ignore[misc]
        details = refused(lambda: _register(central, spent, "p-replay"), U)
        assert "registration token already used" in details
        details = refused(
            lambda: _whoami(central, central.user_token("eve")),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert details == "user eve is banned"
        with central.sync_channel(central.director_token([SITE])) as channel:
            demand = sitedirectors_pb2_grpc.SiteDirectorServiceStub(channel).GetPilotDemand(
                sitedirectors_pb2.GetPilotDemandRequest(queues=[resources()]), timeout=10
            )
            assert demand.demands[0].blocked
        with central.sync_channel(central.admin_token()) as channel:
            listed = admin_pb2_grpc.AdminServiceStub(channel).ListRevocations(
                admin_pb2.ListRevocationsRequest(), timeout=10
            )
            assert sorted(r.kind for r in listed.revocations) == [
                "jti",
                "pilot",
                "site_director",
                "user",
            ]
