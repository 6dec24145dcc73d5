"""The transport of a real central process: TLS trust, message size limits, `--insecure`."""

from __future__ import annotations

from pathlib import Path

import grpc

from gridpilot.channel import ClientSecurity, StaticToken, open_sync_channel
from gridpilot.security.tls import ClientTls
from gridpilot.v1 import auth_pb2, auth_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from tests.central.security.helpers import refused, spec
from tests.support.central_process import CentralHandle, running_central
from tests.support.pki import TestPki


def test_a_client_trusting_another_ca_fails_the_handshake(tmp_path: Path) -> None:
    with running_central(tmp_path) as central:
        pki = TestPki(tmp_path / "pki")
        token = StaticToken(central.admin_token())
        untrusting = ClientSecurity(tls=ClientTls(ca=pki.other_ca), token=token)
        with open_sync_channel(central.target, untrusting) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            refused(
                lambda: stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5),
                grpc.StatusCode.UNAVAILABLE,
            )
        # The same call with the right CA goes through.
        with central.sync_channel(token) as channel:
            me = auth_pb2_grpc.AuthServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5)
            assert me.role == "admin"
        # Plaintext to a TLS port gets nowhere either.
        with open_sync_channel(central.target, ClientSecurity.insecure(token)) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            refused(
                lambda: stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5),
                grpc.StatusCode.UNAVAILABLE,
            )


def test_oversized_message_is_refused(tmp_path: Path) -> None:
    limit = 64 * 1024
    with running_central(tmp_path, {"security": {"max_message_bytes": limit}}) as central:
        with central.sync_channel(central.user_token("alice")) as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            big = jobs_pb2.SubmitJobsRequest(jobs=[spec(basf2_options="x" * (2 * limit))])
            refused(lambda: jobs.SubmitJobs(big, timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED)
            small = jobs_pb2.SubmitJobsRequest(jobs=[spec(basf2_options="-n 10")])
            assert list(jobs.SubmitJobs(small, timeout=10).job_ids) == [1]
        with central.sync_channel(central.admin_token()) as channel:
            listed = jobs_pb2_grpc.JobServiceStub(channel).ListJobs(
                jobs_pb2.ListJobsRequest(), timeout=10
            )
            assert [j.job_id for j in listed.jobs] == [1]


def test_insecure_serves_plaintext_with_a_warning_and_still_needs_tokens(
    tmp_path: Path,
) -> None:
    with running_central(tmp_path, insecure=True) as central:
        assert central.ca_path is None
        assert "serving WITHOUT TLS" in central.log_text()
        with central.sync_channel(central.user_token("alice")) as channel:
            me = auth_pb2_grpc.AuthServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5)
            assert me.subject == "alice"
        with central.sync_channel(None) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            refused(
                lambda: stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5),
                grpc.StatusCode.UNAUTHENTICATED,
            )


def test_login_port_is_in_the_port_file_and_takes_client_certificates(tmp_path: Path) -> None:
    overrides = {"users": [{"name": "alice", "groups": ["belle_user"]}]}
    with running_central(tmp_path, overrides, login=True) as central:
        lines = central.port_file.read_text().splitlines()
        assert lines[0] == central.target
        assert lines[1] == f"login {central.login_target}"
        pki = TestPki(tmp_path / "pki")
        cert, key = pki.client_cert("alice")
        security = central.client_security(None, cert=cert, key=key)
        with open_sync_channel(central.login_target, security) as channel:
            reply = auth_pb2_grpc.AuthServiceStub(channel).IssueToken(
                auth_pb2.IssueTokenRequest(), timeout=10
            )
        assert (reply.subject, reply.group) == ("alice", "belle_user")
        assert _whoami_subject(central, reply.token) == "alice"


def _whoami_subject(central: CentralHandle, token: str) -> str:
    with central.sync_channel(token) as channel:
        me = auth_pb2_grpc.AuthServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5)
    return me.subject
