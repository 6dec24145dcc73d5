"""The cloud backend against real cloud APIs: moto's EC2 server and the mimic OpenStack
emulator (tests/support/cloud.py). No VM boots in an emulator, so:

- EC2: `VmBooter` plays the hypervisor -- it runs each new VM's user data (fetched through
  the EC2 API) on this machine and, when the script powers off, stops the instance as its
  shutdown behaviour says. The conformance suite's tests hold, except where they need what no
  cloud API carries: a pilot's exit status (test_running_then_done's exit_code 0,
  test_nonzero_exit_is_failed, test_state_survives_restart's exit 5) and its output
  (fetch_output is the provider's console, canned text in moto: test_running_then_done,
  test_output_is_capped). Those are replaced by their VM equivalents, saying so. EC2 keeps a
  deleted instance listed (terminated), so "vanished" is shown with a VM the provider lost
  altogether (moto's reset, on a moto of the test's own).
- OpenStack: mimic drops user data (nothing to boot), but its control API moves a server to
  any Nova status, as a hypervisor would: the tests that need a pilot's program to run and
  exit are replaced by VM lifecycle equivalents (SHUTOFF = the VM powered off, ERROR).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from central.models.pilot_states import PilotState
from sitedirectors.base import (
    Backend,
    BackendConfigError,
    BackendContext,
    BackendNotSupportedError,
    LivePilot,
    PilotLaunch,
    SubmitOutcome,
    SubmitRequest,
)
from sitedirectors.cloud import CloudBackend, create_cloud_backend
from sitedirectors.cloud_options import convert_options, load_credentials
from sitedirectors.cloud_parse import DELETION_TEXT, TAG_PILOT, DeletionReason
from sitedirectors.cloud_provider import open_provider
from tests.sitedirectors.conformance import (
    QUEUE,
    BackendConformance,
    LaunchFactory,
    is_final,
    wait_status,
)
from tests.support.cloud import (
    MIMIC_FLAVOR,
    MIMIC_REGION,
    MIMIC_SERVICE,
    MimicServer,
    MotoServer,
    VmBooter,
    ec2_backend_options,
    running_mimic,
    running_moto,
    write_credentials,
)
from tests.support.processes import kill_everything_under

VANISH_GRACE = 1.0
TOKEN = "eyJhbGciOiJFUzI1NiJ9.registration-token-under-test.c2lnbmF0dXJl"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def mimic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MimicServer]:
    with running_mimic(tmp_path_factory.mktemp("mimic")) as server:
        yield server


@pytest.fixture
def director() -> str:
    """Each test's VMs carry a director name of their own: tests never see each other's."""
    return f"test-{uuid.uuid4().hex[:10]}"


def ec2_options(moto: MotoServer, tmp_path: Path, director: str, **extra: Any) -> dict[str, Any]:
    return ec2_backend_options(moto, tmp_path, director, **{"vanish_grace": VANISH_GRACE, **extra})


def openstack_options(
    mimic: MimicServer, tmp_path: Path, director: str, **extra: Any
) -> dict[str, Any]:
    creds = write_credentials(
        tmp_path / "openstack.toml",
        username=mimic.username,
        password=mimic.password,
        tenant=mimic.tenant,
    )
    return {
        "provider": "openstack",
        "credentials_file": str(creds),
        "endpoint": mimic.auth_url,
        "auth_version": "2.0_password",
        "service_name": MIMIC_SERVICE,
        "region": MIMIC_REGION,
        "image": mimic.images()[0],
        "flavor": MIMIC_FLAVOR,
        "director": director,
        "vanish_grace": VANISH_GRACE,
        "timeout": 10.0,
        **extra,
    }


def make(tmp_path: Path, options: dict[str, Any], work: str = "director") -> Backend:
    return create_cloud_backend(BackendContext(QUEUE.name, tmp_path / work, options))


def python_launch(pilot_id: str, code: str) -> PilotLaunch:
    return PilotLaunch(pilot_id, (sys.executable, "-c", code), registration_token=TOKEN)


def submit(backend: Backend, count: int = 1, code: str = "pass") -> list[str]:
    launches = tuple(python_launch(uuid.uuid4().hex, code) for _ in range(count))
    results = backend.submit(SubmitRequest(QUEUE, launches))
    assert [r.outcome for r in results] == [SubmitOutcome.OK] * count, results
    return [r.reference for r in results]


def fresh(backend: Backend) -> Backend:
    """The same backend, made to list again (not reuse this cycle's listing)."""
    assert isinstance(backend, CloudBackend)
    backend._forget_listing()
    return backend


def state_of(backend: Backend, ref: str) -> PilotState:
    return fresh(backend).status([ref])[ref].state


# ---- EC2: the conformance suite, with a hypervisor for moto's VMs -----------------------------


class TestCloudConformanceEC2(BackendConformance):
    """The suite with moto's VMs booted by VmBooter. Inherited as they are:
    test_results_follow_request_order, test_cancel_aborts,
    test_cancel_of_finished_pilot_is_harmless, test_unknown_reference,
    test_cleanup_forgets_finished_pilots, test_cleanup_keeps_running_pilots."""

    # Not applicable to VMs, and so not run (their VM equivalents follow, named as such):
    # - exit statuses: no cloud API carries them (the pilot reports its own to central);
    test_running_then_done = None  # type: ignore[assignment]
    test_nonzero_exit_is_failed = None  # type: ignore[assignment]
    test_state_survives_restart = None  # type: ignore[assignment]
    # - the program's output: the backend's output is the VM's console, canned in moto;
    test_output_is_capped = None  # type: ignore[assignment]
    # - a VM deleted behind the backend's back stays listed (terminated) on EC2: it
    #   powered off, it did not vanish (see test_ec2_vm_the_provider_lost_is_vanished).
    test_vanished_pilot_is_aborted = None  # type: ignore[assignment]

    @pytest.fixture(autouse=True)
    def _keep_moto(self, moto: MotoServer) -> None:
        self.moto = moto

    @pytest.fixture
    def booter(self, moto: MotoServer, tmp_path: Path, director: str) -> Iterator[VmBooter]:
        with VmBooter(moto, tmp_path / "hypervisor", director=director) as booter:
            yield booter
        kill_everything_under(tmp_path)
        assert not booter.errors, booter.errors

    @pytest.fixture
    def backend(
        self, moto: MotoServer, tmp_path: Path, director: str, booter: VmBooter
    ) -> Iterator[Backend]:
        self.booter = booter
        instance = make(tmp_path, ec2_options(moto, tmp_path, director))
        yield instance
        instance.cancel([i["InstanceId"] for i in moto.instances(director)])

    @pytest.fixture
    def restarted_backend(
        self, moto: MotoServer, tmp_path: Path, director: str
    ) -> Callable[[], Backend]:
        return lambda: make(tmp_path, ec2_options(moto, tmp_path, director))

    @pytest.fixture
    def launch_factory(self) -> LaunchFactory:
        return python_launch

    def test_vm_of_an_exiting_pilot_powers_off_and_is_done(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        """Running while the program runs; when it exits (0 or 3 alike) the VM powers off:
        Done, with no exit code. The exit status is on the VM's console."""
        hello = self.submit_one(
            backend, launch_factory, "import time; time.sleep(1.5); print('pilot says hello')"
        )
        three = self.submit_one(backend, launch_factory, "import sys; sys.exit(3)")
        wait_status(backend, hello, lambda s: s.state is PilotState.RUNNING)
        for ref in (hello, three):
            done = wait_status(backend, ref, is_final)
            assert (done.state, done.exit_code) == (PilotState.DONE, None), done
            assert done.reason == "the VM powered off (its pilot exited)"
        consoles = {ref: self.booter.vms[ref].output for ref in (hello, three)}
        assert "pilot says hello" in consoles[hello]
        assert "exited with status 3; powering off" in consoles[three]

    def test_vm_deleted_behind_the_backends_back_is_done(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "import time; time.sleep(60)")
        wait_status(backend, ref, lambda s: s.state is PilotState.RUNNING)
        self.moto.terminate(ref)
        assert wait_status(fresh(backend), ref, is_final).state is PilotState.DONE

    def test_vm_states_survive_restart(
        self,
        backend: Backend,
        restarted_backend: Callable[[], Backend],
        launch_factory: LaunchFactory,
    ) -> None:
        """A new backend over the same state sees the powered-off VM Done, the running one
        Running, and cancels it."""
        done_ref = self.submit_one(backend, launch_factory, "import sys; sys.exit(0)")
        running_ref = self.submit_one(backend, launch_factory, "import time; time.sleep(60)")
        wait_status(backend, done_ref, is_final)
        wait_status(backend, running_ref, lambda s: s.state is PilotState.RUNNING)
        backend.close()
        again = restarted_backend()
        states = again.status([done_ref, running_ref])
        assert states[done_ref].state is PilotState.DONE
        assert states[running_ref].state is PilotState.RUNNING
        again.cancel([running_ref])
        assert wait_status(again, running_ref, is_final).state is PilotState.ABORTED

    def test_console_output_is_capped(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        """fetch_output is the VM's console (EC2 GetConsoleOutput), capped, its tail kept."""
        ref = self.submit_one(backend, launch_factory, "pass")
        whole = backend.fetch_output(ref, max_bytes=1 << 20)
        tail = backend.fetch_output(ref, max_bytes=200)
        assert len(whole.encode()) > 200
        assert len(tail.encode()) <= 200
        assert whole.endswith(tail)


def test_ec2_vm_the_provider_lost_is_vanished(tmp_path: Path, director: str) -> None:
    """A VM gone from the provider's listing altogether (moto reset on a moto of its own,
    without IAM: the reset forgets IAM users too) is Aborted "vanished" after vanish_grace."""
    with running_moto(tmp_path / "own-moto", iam=False) as own:
        backend = make(tmp_path, ec2_options(own, tmp_path, director))
        [ref] = submit(backend, code="import time; time.sleep(60)")
        assert state_of(backend, ref) is PilotState.RUNNING
        own.reset()
        assert state_of(backend, ref) is PilotState.UNKNOWN  # not yet past vanish_grace
        time.sleep(VANISH_GRACE)
        gone = fresh(backend).status([ref])[ref]
        assert gone.state is PilotState.ABORTED
        assert "vanished" in gone.reason


# ---- OpenStack: what holds without a boot, and the VM lifecycle equivalents ------------------


class TestCloudConformanceOpenStack(BackendConformance):
    """mimic runs no user data. Inherited as they are: test_cancel_aborts,
    test_vanished_pilot_is_aborted, test_unknown_reference, test_cleanup_keeps_running_pilots.
    """

    # Not applicable without a boot (each needs the pilot's program to run and exit), and
    # so not run; their VM equivalents below move the server through mimic's control API
    # as a hypervisor would (SHUTOFF = the VM powered off; ERROR).
    test_results_follow_request_order = None  # type: ignore[assignment]
    test_running_then_done = None  # type: ignore[assignment]
    test_nonzero_exit_is_failed = None  # type: ignore[assignment]
    test_cancel_of_finished_pilot_is_harmless = None  # type: ignore[assignment]
    test_state_survives_restart = None  # type: ignore[assignment]
    test_cleanup_forgets_finished_pilots = None  # type: ignore[assignment]
    # mimic has no console output (os-getConsoleOutput).
    test_output_is_capped = None  # type: ignore[assignment]

    @pytest.fixture
    def backend(self, mimic: MimicServer, tmp_path: Path, director: str) -> Iterator[Backend]:
        self.mimic = mimic
        instance = make(tmp_path, openstack_options(mimic, tmp_path, director))
        yield instance
        mine = [s["id"] for s in mimic.servers() if s["metadata"].get(TAG_PILOT)]
        instance.cancel(mine)

    @pytest.fixture
    def restarted_backend(
        self, mimic: MimicServer, tmp_path: Path, director: str
    ) -> Callable[[], Backend]:
        return lambda: make(tmp_path, openstack_options(mimic, tmp_path, director))

    @pytest.fixture
    def launch_factory(self) -> LaunchFactory:
        return python_launch

    def vanish(self, reference: str) -> None:
        self.mimic.delete(reference)

    def power_off(self, backend: Backend, ref: str) -> None:
        """What the pilot's poweroff does to the server."""
        self.mimic.set_status(ref, "SHUTOFF")
        fresh(backend)

    def test_results_follow_request_order_and_powered_off_vms_are_done(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        launches = tuple(launch_factory(uuid.uuid4().hex, "pass") for _ in range(3))
        results = backend.submit(SubmitRequest(QUEUE, launches))
        assert [r.pilot_id for r in results] == [launch.pilot_id for launch in launches]
        assert all(r.outcome is SubmitOutcome.OK for r in results)
        assert len({r.reference for r in results}) == 3
        for r in results:
            self.power_off(backend, r.reference)
            assert wait_status(backend, r.reference, is_final).state is PilotState.DONE

    def test_states_follow_the_server_status(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        """BUILD -> Waiting, ACTIVE -> Running, SHUTOFF (powered off) -> Done."""
        ref = self.submit_one(backend, launch_factory, "pass")
        self.mimic.set_status(ref, "BUILD")
        assert state_of(backend, ref) is PilotState.WAITING
        self.mimic.set_status(ref, "ACTIVE")
        assert state_of(backend, ref) is PilotState.RUNNING
        self.power_off(backend, ref)
        done = backend.status([ref])[ref]
        assert (done.state, done.exit_code) == (PilotState.DONE, None)

    def test_server_in_error_is_failed(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "pass")
        self.mimic.set_status(ref, "ERROR")
        failed = fresh(backend).status([ref])[ref]
        assert failed.state is PilotState.FAILED
        assert "error" in failed.reason

    def test_cancel_of_powered_off_vm_is_harmless(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "pass")
        self.power_off(backend, ref)
        backend.cancel([ref])
        assert state_of(backend, ref) is PilotState.DONE
        assert ref not in [s["id"] for s in self.mimic.servers()]

    def test_server_states_survive_restart(
        self,
        backend: Backend,
        restarted_backend: Callable[[], Backend],
        launch_factory: LaunchFactory,
    ) -> None:
        done_ref, failed_ref, running_ref = (
            self.submit_one(backend, launch_factory, "pass") for _ in range(3)
        )
        self.mimic.set_status(done_ref, "SHUTOFF")
        self.mimic.set_status(failed_ref, "ERROR")
        backend.close()
        again = restarted_backend()
        states = again.status([done_ref, failed_ref, running_ref])
        assert states[done_ref].state is PilotState.DONE
        assert states[failed_ref].state is PilotState.FAILED
        assert states[running_ref].state is PilotState.RUNNING
        again.cancel([running_ref])
        assert wait_status(again, running_ref, is_final).state is PilotState.ABORTED

    def test_no_console_output_is_not_supported(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "pass")
        with pytest.raises(BackendNotSupportedError):
            backend.fetch_output(ref, max_bytes=200)

    def test_cleanup_forgets_powered_off_vms(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "pass")
        self.power_off(backend, ref)
        backend.cleanup([ref])
        assert state_of(backend, ref) is PilotState.UNKNOWN
        assert ref not in [s["id"] for s in self.mimic.servers()]


# ---- VMs: tags, user data, the token -----------------------------------------------------------


def test_ec2_vm_has_its_tags_name_and_user_data_and_the_token_only_there(
    moto: MotoServer, tmp_path: Path, director: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = make(tmp_path, ec2_options(moto, tmp_path, director, tags={"project": "belle"}))
    [ref] = submit(backend)
    backend.status([ref])
    backend.reconcile([], time.time() + 10)
    [instance] = moto.instances(director, QUEUE.name)
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["gridpilot-director"] == director
    assert tags["gridpilot-queue"] == QUEUE.name
    assert tags["Name"] == f"gridpilot-{tags[TAG_PILOT]}"
    assert tags["project"] == "belle"
    assert moto.shutdown_behaviour(ref) == "terminate"
    user_data = moto.user_data(ref)
    assert user_data.startswith("#!/bin/sh\n")
    assert TOKEN in user_data
    assert TOKEN not in repr(tags)
    logged = [f"{r.getMessage()} {getattr(r, 'fields', '')} {r.args}" for r in caplog.records]
    assert logged
    assert not [line for line in logged if TOKEN in line]
    assert any("vm.deleted" in line and ref in line for line in logged)


def test_openstack_vm_has_its_tags_and_the_token_is_not_among_them(
    mimic: MimicServer, tmp_path: Path, director: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = make(tmp_path, openstack_options(mimic, tmp_path, director))
    [ref] = submit(backend)
    [server] = [s for s in mimic.servers() if s["id"] == ref]
    assert server["metadata"]["gridpilot-director"] == director
    assert server["name"] == f"gridpilot-{server['metadata'][TAG_PILOT]}"
    assert TOKEN not in repr(server)
    assert not [r for r in caplog.records if TOKEN in f"{r.getMessage()} {r.__dict__}"]
    backend.cancel([ref])


def test_restarted_backend_finds_its_vms_by_their_tags_alone(
    moto: MotoServer, tmp_path: Path, director: str
) -> None:
    """A director that lost its state directory still sees its VMs (by tags)."""
    options = ec2_options(moto, tmp_path, director)
    refs = submit(make(tmp_path, options), 2, "import time; time.sleep(60)")
    amnesiac = make(tmp_path, {**options, "state_dir": str(tmp_path / "empty")})
    assert {s.state for s in amnesiac.status(refs).values()} == {PilotState.RUNNING}
    amnesiac.reconcile([], time.time() + 3600)  # ... and cleans them up when unneeded
    assert {i["State"]["Name"] for i in moto.instances(director)} == {"terminated"}


# ---- quotas ------------------------------------------------------------------------------------


def test_max_vms_is_respected_across_cycles(
    mimic: MimicServer, tmp_path: Path, director: str
) -> None:
    backend = make(tmp_path, openstack_options(mimic, tmp_path, director, max_vms=2))
    launches = tuple(python_launch(uuid.uuid4().hex, "pass") for _ in range(3))
    first = backend.submit(SubmitRequest(QUEUE, launches))
    assert [r.outcome for r in first] == [SubmitOutcome.OK, SubmitOutcome.OK, SubmitOutcome.RETRY]
    assert "quota reached: max_vms = 2 (0 VMs of this queue exist)" in first[2].error
    [again] = backend.submit(SubmitRequest(QUEUE, launches[2:]))
    assert again.outcome is SubmitOutcome.RETRY
    assert "2 VMs of this queue exist" in again.error
    backend.cancel([first[0].reference])
    [after] = backend.submit(SubmitRequest(QUEUE, launches[2:]))
    assert after.outcome is SubmitOutcome.OK
    mine = [s for s in mimic.servers() if s["metadata"].get("gridpilot-director") == director]
    assert len(mine) == 2
    backend.cancel([s["id"] for s in mine])


def test_max_cores_counts_the_flavors_cores(
    mimic: MimicServer, tmp_path: Path, director: str
) -> None:
    # Flavor "4" has 2 vCPUs in mimic: 5 cores hold two VMs.
    options = openstack_options(mimic, tmp_path, director, flavor="4", max_cores=5)
    backend = make(tmp_path, options)
    launches = tuple(python_launch(uuid.uuid4().hex, "pass") for _ in range(3))
    results = backend.submit(SubmitRequest(QUEUE, launches))
    assert [r.outcome for r in results][:2] == [SubmitOutcome.OK] * 2
    assert results[2].outcome is SubmitOutcome.RETRY
    assert "max_cores = 5" in results[2].error
    backend.cancel([r.reference for r in results[:2]])


def test_the_providers_instance_quota_is_respected(
    moto: MotoServer, tmp_path: Path, director: str
) -> None:
    """moto's account allows 20 instances (DescribeAccountAttributes max-instances)."""
    backend = make(tmp_path, ec2_options(moto, tmp_path, director, max_vms=100))
    live = [i for i in moto.instances() if i["State"]["Name"] != "terminated"]
    room = 20 - len(live)
    assert room > 0, "other tests left instances running"
    launches = tuple(python_launch(uuid.uuid4().hex, "pass") for _ in range(room + 2))
    results = backend.submit(SubmitRequest(QUEUE, launches))
    outcomes = [r.outcome for r in results]
    assert outcomes == [SubmitOutcome.OK] * room + [SubmitOutcome.RETRY] * 2
    assert "the provider's instance quota (20)" in results[-1].error
    backend.cancel([r.reference for r in results if r.reference])


# ---- reconcile: each reason -------------------------------------------------------------------


def live(
    ref: str, pilot_id: str, *, submitted: float, registered: float = 0, beat: float = 0
) -> LivePilot:
    return LivePilot(pilot_id, ref, PilotState.WAITING, submitted, registered, beat)


@pytest.mark.parametrize(
    ("reason", "pilot_view", "later"),
    [
        (DeletionReason.PILOT_ENDED, None, 10.0),
        (DeletionReason.BOOT_TIMEOUT, {}, 601.0),
        (DeletionReason.MAX_LIFETIME, {"registered": 1, "beat": 86400}, 86401.0),
        (DeletionReason.IDLE, {"registered": 1, "beat": 10}, 1000.0),
        (None, {"registered": 1, "beat": 990}, 1000.0),
    ],
)
def test_reconcile_deletes_vms_nobody_needs(
    *,
    moto: MotoServer,
    tmp_path: Path,
    director: str,
    caplog: pytest.LogCaptureFixture,
    reason: DeletionReason | None,
    pilot_view: dict[str, float] | None,
    later: float,
) -> None:
    caplog.set_level(logging.INFO)
    limits = {"boot_timeout": 600.0, "max_lifetime": 86400.0, "idle_limit": 900.0}
    backend = make(tmp_path, ec2_options(moto, tmp_path, director, **limits))
    launch = python_launch(uuid.uuid4().hex, "pass")
    [result] = backend.submit(SubmitRequest(QUEUE, (launch,)))
    ref = result.reference
    assert isinstance(backend, CloudBackend)
    t0 = backend._records.items[ref].submitted
    view = []
    if pilot_view is not None:
        view = [
            live(
                ref,
                launch.pilot_id,
                submitted=t0,
                registered=t0 + pilot_view["registered"] if "registered" in pilot_view else 0,
                beat=t0 + pilot_view["beat"] if "beat" in pilot_view else 0,
            )
        ]
    backend.reconcile(view, t0 + later)
    [instance] = moto.instances(director)
    status = fresh(backend).status([ref])[ref]
    if reason is None:
        assert instance["State"]["Name"] == "running"
        assert status.state is PilotState.RUNNING
        backend.cancel([ref])
        return
    assert instance["State"]["Name"] == "terminated"
    assert (status.state, status.reason) == (PilotState.ABORTED, DELETION_TEXT[reason])
    [deleted] = [r for r in caplog.records if r.getMessage() == "vm.deleted"]
    fields = deleted.fields  # type: ignore[attr-defined]
    assert (fields["pilot_id"], fields["node_id"], fields["reason"]) == (
        launch.pilot_id,
        ref,
        reason.value,
    )


def test_reconcile_deletes_stopped_vms_and_vms_in_error(
    moto: MotoServer, mimic: MimicServer, tmp_path: Path, director: str
) -> None:
    ec2 = make(tmp_path, ec2_options(moto, tmp_path, director), "ec2")
    [stopped] = submit(ec2)
    moto.stop(stopped)
    pilot = LivePilot("x", stopped, PilotState.RUNNING, time.time(), time.time(), time.time())
    fresh(ec2).reconcile([pilot], time.time())
    assert [i["State"]["Name"] for i in moto.instances(director)] == ["terminated"]
    # The pilot had ended (its VM powered off): it stays Done.
    assert state_of(ec2, stopped) is PilotState.DONE
    openstack = make(tmp_path, openstack_options(mimic, tmp_path, director), "os")
    [broken] = submit(openstack)
    mimic.set_status(broken, "ERROR")
    fresh(openstack).reconcile([], time.time())
    assert broken not in [s["id"] for s in mimic.servers()]
    assert state_of(openstack, broken) is PilotState.FAILED


# ---- API errors and configuration -------------------------------------------------------------


def test_bad_credentials_fail_naming_the_endpoint(
    moto: MotoServer, mimic: MimicServer, tmp_path: Path, director: str
) -> None:
    options = ec2_options(moto, tmp_path, director)
    wrong = write_credentials(tmp_path / "wrong.toml", key_id=moto.key_id, secret="not-it")
    [ec2] = make(tmp_path, {**options, "credentials_file": str(wrong)}).submit(
        SubmitRequest(QUEUE, (python_launch("p1", "pass"),))
    )
    assert ec2.outcome is SubmitOutcome.FAILED
    assert f"authentication refused by {moto.endpoint}" in ec2.error
    mimic.refuse_logins("intruder")
    os_options = openstack_options(mimic, tmp_path, director)
    intruder = write_credentials(
        tmp_path / "intruder.toml", username="intruder", password="x", tenant=mimic.tenant
    )
    [openstack] = make(tmp_path, {**os_options, "credentials_file": str(intruder)}).submit(
        SubmitRequest(QUEUE, (python_launch("p2", "pass"),))
    )
    assert openstack.outcome is SubmitOutcome.FAILED
    assert f"authentication refused by {mimic.auth_url}" in openstack.error
    assert moto.instances(director) == []


class RefusingServer:
    """A TCP port that accepts and drops every connection, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_unreachable_endpoint_is_retried_with_growing_backoff(
    moto: MotoServer, tmp_path: Path, director: str
) -> None:
    server = RefusingServer()
    now = [1000.0]
    try:
        raw = ec2_options(moto, tmp_path, director, backoff=60.0, backoff_max=200.0)
        raw["endpoint"] = f"http://127.0.0.1:{server.port}"
        options = convert_options(raw, QUEUE.name)
        provider = open_provider(options, load_credentials(options, QUEUE.name))
        backend = CloudBackend(
            options,
            provider,
            director=director,
            queue=QUEUE.name,
            state_dir=tmp_path / "state",
            clock=lambda: now[0],
        )
        request = SubmitRequest(QUEUE, (python_launch("p1", "pass"),))
        [first] = backend.submit(request)
        assert first.outcome is SubmitOutcome.RETRY
        assert f"127.0.0.1:{server.port}" in first.error
        calls = server.connections
        assert calls >= 1
        now[0] += 30
        [waiting] = backend.submit(request)
        assert waiting.outcome is SubmitOutcome.RETRY
        assert "backing off" in waiting.error
        assert "30 s more" in waiting.error
        backend.reconcile([], now[0])  # skipped too
        assert server.connections == calls  # the API was left alone
        now[0] += 31
        [second] = backend.submit(request)
        assert second.outcome is SubmitOutcome.RETRY
        assert server.connections > calls
        assert "120 s more" in backend.backing_off()  # doubled
    finally:
        server.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"flavour": "m1.small"}, "flavour"),
        ({"max_vms": "ten"}, "max_vms"),
        ({"provider": "azure"}, "provider"),
        ({"max_vms": 0}, "max_vms"),
        ({"bundle_url": "http://example.org/b.tgz"}, "bundle_url"),
        ({"tags": {"gridpilot-queue": "x"}}, "tags"),
        ({"endpoint": ""}, "endpoint"),
        ({"idle_limit": -1}, "idle_limit"),
    ],
)
def test_bad_option_names_the_field(
    mimic: MimicServer, tmp_path: Path, director: str, change: dict[str, Any], field: str
) -> None:
    options = {**openstack_options(mimic, tmp_path, director), **change}
    with pytest.raises(BackendConfigError, match=field):
        make(tmp_path, options)


def test_credentials_file_must_be_private_and_complete(
    moto: MotoServer, tmp_path: Path, director: str
) -> None:
    options = ec2_options(moto, tmp_path, director)
    loose = write_credentials(tmp_path / "loose.toml", 0o644, key_id="a", secret="b")
    with pytest.raises(BackendConfigError, match=r"credentials_file.*mode 0644"):
        make(tmp_path, {**options, "credentials_file": str(loose)})
    partial = write_credentials(tmp_path / "partial.toml", key_id="a")
    with pytest.raises(BackendConfigError, match="lacks secret"):
        make(tmp_path, {**options, "credentials_file": str(partial)})
    typo = write_credentials(tmp_path / "typo.toml", key_id="a", secrett="s3cr3t-value")
    with pytest.raises(BackendConfigError, match="secrett") as caught:
        make(tmp_path, {**options, "credentials_file": str(typo)})
    assert "s3cr3t-value" not in str(caught.value)


def test_unknown_reference_and_missing_bundle(
    moto: MotoServer, tmp_path: Path, director: str
) -> None:
    backend = make(tmp_path, ec2_options(moto, tmp_path, director))
    [result] = backend.submit(SubmitRequest(QUEUE, (PilotLaunch("p1", registration_token=TOKEN),)))
    assert result.outcome is SubmitOutcome.FAILED
    assert "bundle_url" in result.error
    assert moto.instances(director) == []
