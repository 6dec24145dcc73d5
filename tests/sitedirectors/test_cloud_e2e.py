"""Central + site director + a `cloud` queue against moto's EC2: VMs for the demand (never
more, max_vms respected), "booted" on this machine by running each VM's user data as fetched
from the EC2 API (tests/support/cloud.py VmBooter), pilots from the real bundle over HTTPS
that register and run real payload jobs to Done; then the director's reconcile deletes the
VMs of the pilots that ended. And a cloud queue with wrong credentials fails visibly and
sits out, while the site's other queue goes on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridpilot.v1 import common_pb2
from sitedirectors.bundle import PilotBundle
from sitedirectors.config import config_from_dict
from sitedirectors.director import Director
from tests.sitedirectors.helpers import (
    DIRECTOR,
    admin_queues,
    config_dict,
    job_statuses,
    job_table,
    kill_pilots,
    list_pilots,
    run_until,
    sleeper_command,
    submit_payload_jobs,
)
from tests.support.bundle import NODE_PYTHON, require_node_python
from tests.support.central_process import (
    CE,
    QUEUE,
    CentralHandle,
    default_config,
    running_central,
)
from tests.support.cloud import (
    MotoServer,
    VmBooter,
    ec2_backend_options,
    running_moto,
    serving_https,
    write_credentials,
)
from tests.support.processes import kill_everything_under

pytestmark = pytest.mark.e2e

PS = common_pb2.PilotState
JS = common_pb2.JobStatus
FINAL_JOB_STATUSES = {JS.JOB_STATUS_DONE, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_KILLED}
CLOUD_QUEUE = "cloud"
MAX_VMS = 2


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    with running_moto(tmp_path / "moto") as server:
        yield server


@pytest.fixture
def cleanup(tmp_path: Path) -> Iterator[None]:
    yield
    kill_everything_under(tmp_path)


def cloud_options(moto: MotoServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    defaults = {"max_vms": MAX_VMS, "vanish_grace": 3.0}
    return ec2_backend_options(moto, tmp_path, DIRECTOR, **{**defaults, **extra})


def live_instances(moto: MotoServer, queue: str) -> list[dict[str, Any]]:
    return [i for i in moto.instances(DIRECTOR, queue) if i["State"]["Name"] != "terminated"]


def test_vms_for_the_demand_run_jobs_and_are_deleted_when_their_pilots_end(
    tmp_path: Path, moto: MotoServer, pilot_bundle: PilotBundle, cleanup: None
) -> None:
    require_node_python()
    with running_central(tmp_path / "central") as central:
        job_ids, software_setup = submit_payload_jobs(central, tmp_path, 3)
        www = tmp_path / "www"
        www.mkdir()
        shutil.copyfile(pilot_bundle.path, www / pilot_bundle.file_name)
        assert central.pki is not None
        with serving_https(www, central.pki) as base:
            config = config_dict(
                tmp_path,
                central,
                backend="cloud",
                pilot={
                    "command": [],
                    "software_setup": software_setup,
                    "environment": {"GRIDPILOT_PYTHON": str(NODE_PYTHON)},
                    "idle_timeout": 3.0,
                    "extra_args": ["--min-disk-mb", "1", "--kill-grace", "3"],
                    "token_lifetime": 900.0,
                },
                backend_options=cloud_options(moto, tmp_path, bundle_url=f"{base}/{{file_name}}"),
            )
            config["director"]["pilot_bundle"] = str(pilot_bundle.path)
            director = Director(config_from_dict(config))
            # A hung shutdown: the VMs stay up after their pilots powered off, so only the
            # director's reconcile can delete them.
            booter = VmBooter(
                moto,
                tmp_path / "hypervisor",
                director=DIRECTOR,
                queue=QUEUE,
                environment={"CURL_CA_BUNDLE": str(central.ca_path)},
                power_off_acts=False,
            )
            most_at_once = 0

            def watching(probe: Any) -> Any:
                def step() -> bool:
                    nonlocal most_at_once
                    most_at_once = max(most_at_once, len(live_instances(moto, QUEUE)))
                    return bool(probe())

                return step

            try:
                with booter:
                    run_until(
                        director,
                        watching(lambda: set(job_statuses(central)) <= FINAL_JOB_STATUSES),
                        timeout=150,
                        what="jobs to end through VM pilots",
                    )
                    assert job_statuses(central) == [JS.JOB_STATUS_DONE] * 3, job_table(central)
                    try:
                        run_until(
                            director,
                            watching(lambda: not live_instances(moto, QUEUE)),
                            timeout=60,
                            what="the VMs of the ended pilots to be deleted",
                        )
                    except AssertionError as exc:
                        raise AssertionError(f"{exc}\n{_diagnosis(central, moto, booter)}") from exc
            finally:
                director.close()
        pilots = [p for p in list_pilots(central) if p.reference]
    instances = moto.instances(DIRECTOR, QUEUE)
    # Never more VMs than the demand (3 jobs), never more than max_vms at once.
    assert 1 <= len(instances) <= 3
    assert most_at_once <= MAX_VMS
    assert {i["State"]["Name"] for i in instances} == {"terminated"}
    assert {p.reference for p in pilots} == {i["InstanceId"] for i in instances}
    assert sum(p.jobs_run for p in pilots) == 3
    for p in pilots:
        assert p.backend == "cloud"
        assert p.registered_unix > 0
        assert p.state == PS.PILOT_STATE_DONE
    # Each VM ran its pilot to the end and powered off; the director deleted the VM because
    # central no longer listed the pilot as live.
    assert not booter.errors, booter.errors
    for vm in booter.vms.values():
        assert "exited with status 0; powering off" in vm.output, vm.output
    records = json.loads((tmp_path / "director" / "cloud" / QUEUE / "vms.json").read_text())
    assert {r["reason"] for r in records.values()} == {
        "central no longer lists the pilot as live; VM deleted"
    }
    assert len(job_ids) == 3


def test_wrong_credentials_fail_the_cloud_queue_visibly_and_not_the_others(
    tmp_path: Path, moto: MotoServer, cleanup: None
) -> None:
    site = default_config(tmp_path / "central")["sites"][0]
    site["ces"] = [{"name": CE, "queues": [QUEUE, CLOUD_QUEUE]}]
    with running_central(tmp_path / "central", {"sites": [site]}) as central:
        submit_payload_jobs(central, tmp_path, 2)
        config = config_dict(tmp_path, central, max_waiting=2, max_total=2)
        wrong = write_credentials(tmp_path / "wrong.toml", key_id=moto.key_id, secret="wrong")
        cloud_queue = {
            **config["queues"][0],
            "name": CLOUD_QUEUE,
            "backend": "cloud",
            "pilot": {"command": sleeper_command(), "idle_timeout": 5.0},
            "backend_options": cloud_options(moto, tmp_path, credentials_file=str(wrong)),
        }
        config["queues"].append(cloud_queue)
        skip_cycles = config["director"]["failing_queue_skip_cycles"]
        director = Director(config_from_dict(config))
        try:
            first = director.run_cycle()
            queues = {q["queue"]: q for q in admin_queues(central, tmp_path)}
            aborted_after_first = _cloud_pilots(central)
            paused = [director.run_cycle() for _ in range(skip_cycles)]
            aborted_while_paused = _cloud_pilots(central)
            again = director.run_cycle()
        finally:
            director.close()
            kill_pilots(tmp_path / "director" / "pilots")
    error = first.failing[CLOUD_QUEUE]
    assert f"authentication refused by {moto.endpoint}" in error
    assert queues[CLOUD_QUEUE]["state"] == "failing"
    assert queues[CLOUD_QUEUE]["backend"] == "cloud"
    assert f"authentication refused by {moto.endpoint}" in queues[CLOUD_QUEUE]["error"]
    assert queues[CLOUD_QUEUE]["skip_cycles_left"] == skip_cycles
    # The other queue of the site is unaffected: it submitted its pilots and is ok.
    assert queues[QUEUE]["state"] == "ok"
    assert first.submitted[QUEUE] == 2
    # The cloud queue's pilots were recorded Aborted with the reason; it then sits out
    # (backs off) without new attempts, and fails again once it tries.
    assert aborted_after_first
    assert all("authentication refused" in p.status_reason for p in aborted_after_first)
    assert {p.state for p in aborted_after_first} == {PS.PILOT_STATE_ABORTED}
    assert all(CLOUD_QUEUE in r.skipped and CLOUD_QUEUE not in r.submitted for r in paused)
    assert len(aborted_while_paused) == len(aborted_after_first)
    assert CLOUD_QUEUE in again.failing
    assert moto.instances(DIRECTOR) == []


def _cloud_pilots(central: CentralHandle) -> list[Any]:
    return [p for p in list_pilots(central) if p.queue == CLOUD_QUEUE]


def _diagnosis(central: CentralHandle, moto: MotoServer, booter: VmBooter) -> str:
    """Why VMs are still there: central's pilots, the VMs, what the 'hypervisor' saw."""
    pilots = [
        f"{p.pilot_id} {PS.Name(p.state)} ref={p.reference} registered={p.registered_unix:.0f} "
        f"reason={p.status_reason!r}"
        for p in list_pilots(central)
        if p.reference
    ]
    vms = [
        f"{i['InstanceId']} {i['State']['Name']} {i.get('Tags')}"
        for i in moto.instances(DIRECTOR, QUEUE)
    ]
    consoles = [f"{vm.instance_id}: {vm.output[-600:]}" for vm in booter.vms.values()]
    return "\n".join([*pilots, *vms, *booter.errors, *consoles])
