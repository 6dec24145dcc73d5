from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from central.store.records import SEHealthRecord
from gridpilot.v1 import data_pb2
from tests.central.rpc.pilot_helpers import register, request_job
from tests.central.rpc.test_jobs_rpc import spec, submit
from tests.support.central_process import CE, QUEUE, SITE
from tests.support.inprocess import inprocess_central, run

LFN = "/belle/data/run1/f1.root"


def _overrides(tmp_path: Path) -> dict[str, Any]:
    se = tmp_path / "se"
    return {
        "sites": [
            {"name": SITE, "local_ses": ["LOCAL-SE"], "default_output_se": "LOCAL-SE"},
            {"name": "LCG.FAR.xx"},
        ],
        "storage_elements": [
            {"name": "LOCAL-SE", "site": SITE, "url": f"file://{se}/local"},
            {"name": "SITE-SE2", "site": SITE, "url": f"file://{se}/se2"},
            {"name": "NEAR-SE", "site": "LCG.FAR.xx", "url": f"file://{se}/near"},
            {"name": "MID-SE", "site": "LCG.FAR.xx", "url": f"file://{se}/mid"},
            {"name": "FAR-SE", "site": "LCG.FAR.xx", "url": f"file://{se}/far"},
            {"name": "DOWN-SE", "site": "LCG.FAR.xx", "url": f"file://{se}/down", "read": False},
        ],
        "distances": {SITE: {"NEAR-SE": 5, "MID-SE": 20}},
        "failover": {"ses": []},
    }


def test_replicas_ordered_for_a_site(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            ses = ["FAR-SE", "DOWN-SE", "MID-SE", "LOCAL-SE", "NEAR-SE", "SITE-SE2"]
            await env.data.RegisterReplicas(
                data_pb2.RegisterReplicasRequest(
                    replicas=[
                        data_pb2.ReplicaRegistration(lfn=LFN, se=se, size=10, adler32="0000000a")
                        for se in ses
                    ]
                )
            )
            reply = await env.data.GetReplicas(
                data_pb2.GetReplicasRequest(lfns=[LFN, "/belle/none.root"], site=SITE)
            )
            assert [f.lfn for f in reply.files] == [LFN]
            replicas = reply.files[0].replicas
            assert [(r.se, r.rank_reason) for r in replicas] == [
                ("LOCAL-SE", "local SE"),
                ("SITE-SE2", "local SE"),
                ("NEAR-SE", "distance 5"),
                ("MID-SE", "distance 20"),
                ("FAR-SE", "no distance"),
            ]
            assert replicas[0].url == f"file://{tmp_path}/se/local{LFN}"
            assert reply.files[0].size == 10

            dataset = await env.data.ListDataset(data_pb2.ListDatasetRequest(lpn="/belle/data"))
            assert [f.lfn for f in dataset.files] == [LFN]

    run(body())


def test_storage_element_status(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            listed = await env.data.ListStorageElements(data_pb2.ListStorageElementsRequest())
            by_name = {se.name: se for se in listed.storage_elements}
            assert by_name["DOWN-SE"].read_allowed is False
            assert by_name["LOCAL-SE"].protocol == "file"
            request = data_pb2.SetStorageElementStatusRequest(
                name="LOCAL-SE", read_allowed=False, write_allowed=True
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.data.SetStorageElementStatus(request, metadata=env.as_user("alice"))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            admin = env.as_admin()
            await env.data.SetStorageElementStatus(request, metadata=admin)
            await env.data.RegisterReplicas(
                data_pb2.RegisterReplicasRequest(
                    replicas=[
                        data_pb2.ReplicaRegistration(lfn=LFN, se=se, size=1, adler32="00020002")
                        for se in ("LOCAL-SE", "FAR-SE")
                    ]
                )
            )
            reply = await env.data.GetReplicas(data_pb2.GetReplicasRequest(lfns=[LFN], site=SITE))
            assert [r.se for r in reply.files[0].replicas] == ["FAR-SE"]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.data.SetStorageElementStatus(
                    data_pb2.SetStorageElementStatusRequest(name="NO-SE"), metadata=admin
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

    run(body())


def test_register_conflicts_and_failover_requests(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            reg = data_pb2.ReplicaRegistration(lfn=LFN, se="LOCAL-SE", size=1, adler32="00020002")
            await env.data.RegisterReplicas(data_pb2.RegisterReplicasRequest(replicas=[reg]))
            for bad in (
                data_pb2.ReplicaRegistration(lfn=LFN, se="FAR-SE", size=2, adler32="00020002"),
                data_pb2.ReplicaRegistration(lfn=LFN, se="NO-SE", size=1, adler32="00020002"),
                data_pb2.ReplicaRegistration(lfn="relative.root", se="FAR-SE"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await env.data.RegisterReplicas(
                        data_pb2.RegisterReplicasRequest(replicas=[bad])
                    )
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            added = await env.data.AddFailoverRequest(
                data_pb2.AddFailoverRequestRequest(
                    job_id=0, lfn=LFN, source_se="LOCAL-SE", target_se="FAR-SE"
                )
            )
            assert added.request_id > 0
            listed = await env.data.ListFailoverRequests(data_pb2.ListFailoverRequestsRequest())
            assert [r.request_id for r in listed.requests] == [added.request_id]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.data.ListFailoverRequests(
                    data_pb2.ListFailoverRequestsRequest(status="Bogus")
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    run(body())


GB = 1_000_000_000


def test_a_jobs_transfers_teach_its_site_and_its_suspects_are_checked(tmp_path: Path) -> None:
    overrides = _overrides(tmp_path)
    overrides["sites"][0]["ces"] = [{"name": CE, "queues": [QUEUE]}]

    async def body() -> None:
        async with inprocess_central(tmp_path, overrides) as env:
            await env.data.RegisterReplicas(
                data_pb2.RegisterReplicasRequest(
                    replicas=[
                        data_pb2.ReplicaRegistration(lfn=LFN, se=se, size=10, adler32="0000000a")
                        for se in ("NEAR-SE", "MID-SE")
                    ]
                )
            )
            await submit(env, spec())
            pilot_id = await register(env)
            matched = await request_job(env, pilot_id)
            assert matched is not None
            job_md = env.bearer(matched.job_token)
            # NEAR-SE (distance 5) turns out slow from this site: 100 s/GB.
            await env.data.ReportDataAccess(
                data_pb2.ReportDataAccessRequest(
                    job_id=matched.job_id,
                    transfers=[
                        data_pb2.TransferSample(
                            se="NEAR-SE", direction="read", bytes=GB, seconds=100, ok=True
                        )
                    ],
                ),
                metadata=job_md,
            )
            reply = await env.data.GetReplicas(data_pb2.GetReplicasRequest(lfns=[LFN], site=SITE))
            replicas = reply.files[0].replicas
            assert [r.se for r in replicas] == ["MID-SE", "NEAR-SE"]
            assert replicas[1].rank_reason == "cost 33.5 s/GB (1 transfers)"
            assert replicas[1].cost == pytest.approx(33.5)
            # A suspect copy: marked, and a check is queued (once).
            suspect = data_pb2.SuspectReplica(lfn=LFN, se="MID-SE", reason="adler32 mismatch")
            request = data_pb2.ReportDataAccessRequest(job_id=matched.job_id, suspects=[suspect])
            first = await env.data.ReportDataAccess(request, metadata=job_md)
            again = await env.data.ReportDataAccess(request, metadata=env.as_user("alice"))
            assert (first.checks_queued, again.checks_queued) == (1, 0)
            # Another job's token may not report for this job; people report no transfers.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.data.ReportDataAccess(
                    data_pb2.ReportDataAccessRequest(job_id=matched.job_id + 1),
                    metadata=job_md,
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.data.ReportDataAccess(
                    data_pb2.ReportDataAccessRequest(
                        job_id=matched.job_id,
                        transfers=[data_pb2.TransferSample(se="NEAR-SE", bytes=GB, seconds=1)],
                    ),
                    metadata=env.as_user("alice"),
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "only a job's wrapper" in (err.value.details() or "")

    run(body())


def test_remove_files_per_file_results_and_own_requests(tmp_path: Path) -> None:
    mine = "/belle/user/alice/p/f.root"

    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            await env.data.RegisterReplicas(
                data_pb2.RegisterReplicasRequest(
                    replicas=[
                        data_pb2.ReplicaRegistration(lfn=lfn, se="LOCAL-SE", size=1, adler32="1")
                        for lfn in (mine, LFN)
                    ]
                )
            )
            alice = env.as_user("alice")
            reply = await env.data.RemoveFiles(
                data_pb2.RemoveFilesRequest(lfns=[mine, LFN, "/belle/user/alice/none"]),
                metadata=alice,
            )
            results = list(reply.results)
            assert [r.lfn for r in results] == [mine, LFN, "/belle/user/alice/none"]
            assert results[0].request_id > 0
            assert results[0].error == ""
            assert "may remove files only under /belle/user/alice/" in results[1].error
            assert results[2].error == "not in the catalog"
            listed = await env.data.ListFailoverRequests(
                data_pb2.ListFailoverRequestsRequest(request_ids=[results[0].request_id]),
                metadata=alice,
            )
            [request] = listed.requests
            assert (request.operation, request.owner, request.lfn) == ("remove", "alice", mine)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await env.data.ListFailoverRequests(
                    data_pb2.ListFailoverRequestsRequest(request_ids=[results[0].request_id]),
                    metadata=env.as_user("bob"),
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    run(body())


def test_storage_elements_show_their_health(tmp_path: Path) -> None:
    async def body() -> None:
        async with inprocess_central(tmp_path, _overrides(tmp_path)) as env:
            env.central.ses.set_health(
                SEHealthRecord(
                    se="LOCAL-SE", available=True, last_probe=5.0, total_bytes=100, free_bytes=1
                )
            )
            listed = await env.data.ListStorageElements(data_pb2.ListStorageElementsRequest())
            by_name = {se.name: se for se in listed.storage_elements}
            local = by_name["LOCAL-SE"]
            assert (local.readable, local.writable) == (True, False)
            assert local.write_refusal == "full: 99% used (no new writes above 95%)"
            assert (local.health.total_bytes, local.health.free_bytes) == (100, 1)
            down = by_name["DOWN-SE"]
            assert (down.readable, down.read_refusal) == (
                False,
                "reads disabled by an administrator",
            )
            assert not by_name["FAR-SE"].HasField("health")

    run(body())
