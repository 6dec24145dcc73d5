"""The cloud backend's pure decisions: state table, a VM's fate, quotas, API errors."""

from __future__ import annotations

import pytest
from libcloud.compute.types import NodeState

from central.models.pilot_states import PilotState
from sitedirectors.base import LivePilot
from sitedirectors.cloud_parse import (
    DELETION_TEXT,
    NODE_STATES,
    TAG_DIRECTOR,
    TAG_PILOT,
    TAG_QUEUE,
    TAG_SUBMITTED,
    VANISHED_REASON,
    ApiErrorKind,
    DeletionReason,
    Lifecycle,
    ProviderLimits,
    Vm,
    VmRecord,
    classify_api_error,
    decide,
    deleted_record,
    next_backoff,
    normalise_state,
    owned_by,
    to_status,
    vm_name,
    vm_status,
    vm_tags,
    vms_allowed,
)

NOW = 1_800_000_000.0
LIMITS = Lifecycle(boot_timeout=600, max_lifetime=86400, idle_limit=900, grace=60)


def vm(state: str = "running", *, age: float = 100, native: str = "", reason: str = "") -> Vm:
    tags = vm_tags("p1", "dir", "q", NOW - age, {})
    return Vm("i-1", vm_name("p1"), state, native or state, tags, reason)


def pilot(*, registered: float = 0, heartbeat: float = 0) -> LivePilot:
    return LivePilot("p1", "i-1", PilotState.WAITING, NOW - 100, registered, heartbeat)


# ---- states --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("pending", PilotState.WAITING),
        ("starting", PilotState.WAITING),
        ("running", PilotState.RUNNING),
        ("rebooting", PilotState.RUNNING),
        ("stopping", PilotState.RUNNING),
        ("suspended", PilotState.RUNNING),
        ("stopped", PilotState.DONE),
        ("terminated", PilotState.DONE),
        ("error", PilotState.FAILED),
        ("unknown", PilotState.UNKNOWN),
        ("something-new", PilotState.UNKNOWN),
    ],
)
def test_state_table(state: str, expected: PilotState) -> None:
    assert vm_status(vm(state)).state is expected


def test_every_libcloud_state_is_in_the_table() -> None:
    assert {s.value for s in NodeState} <= set(NODE_STATES)


def test_ec2_states_libcloud_calls_unknown_are_refined() -> None:
    assert normalise_state("unknown", "shutting-down") == "stopping"
    assert normalise_state("unknown", "stopping") == "stopping"
    assert normalise_state("unknown", "weird") == "unknown"
    assert normalise_state("running", "running") == "running"


def test_powered_off_vm_is_done_unless_the_provider_stopped_it() -> None:
    done = vm_status(vm("stopped", reason="Client.InstanceInitiatedShutdown"))
    assert (done.state, done.reason) == (PilotState.DONE, "the VM powered off (its pilot exited)")
    spot = vm_status(vm("terminated", reason="Server.SpotInstanceTermination"))
    assert spot.state is PilotState.FAILED
    assert "Server.SpotInstanceTermination" in spot.reason
    error = vm_status(vm("error", native="ERROR", reason="No valid host was found"))
    assert error.state is PilotState.FAILED
    assert "No valid host" in error.reason


def test_status_from_listing_and_record() -> None:
    record = VmRecord(pilot_id="p1", submitted=NOW - 10)
    listed = to_status("i-1", vm("running"), record, NOW, 60)
    assert listed.state is PilotState.RUNNING
    young = to_status("i-1", None, record, NOW, 60)
    assert (young.state, young.reason) == (PilotState.UNKNOWN, "not (yet) listed by the provider")
    gone = to_status("i-1", None, record, NOW + 100, 60)
    assert (gone.state, gone.reason) == (PilotState.ABORTED, VANISHED_REASON)
    unknown = to_status("i-9", None, None, NOW, 60)
    assert unknown.state is PilotState.UNKNOWN
    assert "no record" in unknown.reason


def test_deleted_vm_keeps_the_reason_it_was_deleted_for() -> None:
    record = VmRecord(pilot_id="p1", submitted=NOW - 10)
    cancelled = deleted_record(record, vm("running"), DeletionReason.CANCELLED, NOW)
    status = to_status("i-1", vm("terminated"), cancelled, NOW, 60)
    assert (status.state, status.reason) == (
        PilotState.ABORTED,
        DELETION_TEXT[DeletionReason.CANCELLED],
    )
    # A pilot that had ended (VM powered off) stays ended as it was.
    ended = deleted_record(record, vm("stopped"), DeletionReason.STOPPED, NOW)
    assert to_status("i-1", None, ended, NOW + 999, 60).state is PilotState.DONE
    # A second deletion changes nothing.
    assert deleted_record(ended, vm("running"), DeletionReason.CANCELLED, NOW + 5) == ended


def test_tags_and_names() -> None:
    tags = vm_tags("p1", "dir", "q", 12.5, {"project": "belle", TAG_PILOT: "spoofed"})
    assert tags == {
        "project": "belle",
        TAG_PILOT: "p1",
        TAG_DIRECTOR: "dir",
        TAG_QUEUE: "q",
        TAG_SUBMITTED: "12.500",
    }
    assert vm_name("abc") == "gridpilot-abc"
    assert owned_by(tags, "dir", "q")
    assert not owned_by(tags, "other", "q")
    assert not owned_by(tags, "dir", "other")
    assert Vm("i", "n", "running", "running", {TAG_SUBMITTED: "garbage"}).submitted == 0


# ---- lifecycle: one test per reason, in the order they apply -----------------------------------


def test_terminated_vm_is_left_alone() -> None:
    assert not decide(vm("terminated"), None, LIMITS, NOW).delete


def test_stopped_vm_is_deleted() -> None:
    verdict = decide(vm("stopped"), pilot(registered=NOW - 50), LIMITS, NOW)
    assert verdict.reason is DeletionReason.STOPPED


def test_vm_in_error_is_deleted() -> None:
    verdict = decide(vm("error", reason="no host"), pilot(), LIMITS, NOW)
    assert (verdict.reason, verdict.detail) == (DeletionReason.VM_ERROR, "no host")


def test_vm_of_a_pilot_central_no_longer_lists_is_deleted() -> None:
    assert decide(vm(age=61), None, LIMITS, NOW).reason is DeletionReason.PILOT_ENDED
    # Not one created moments ago (central may not list its pilot yet).
    assert not decide(vm(age=5), None, LIMITS, NOW).delete


def test_vm_past_max_lifetime_is_deleted() -> None:
    busy = pilot(registered=NOW - 90000, heartbeat=NOW - 1)
    assert decide(vm(age=86401), busy, LIMITS, NOW).reason is DeletionReason.MAX_LIFETIME
    assert not decide(vm(age=86399), busy, LIMITS, NOW).delete


def test_vm_whose_pilot_never_registered_is_deleted_after_boot_timeout() -> None:
    assert decide(vm(age=601), pilot(), LIMITS, NOW).reason is DeletionReason.BOOT_TIMEOUT
    assert not decide(vm(age=599), pilot(), LIMITS, NOW).delete
    # A registered pilot is not held to boot_timeout.
    assert not decide(vm(age=700), pilot(registered=NOW - 10), LIMITS, NOW).delete


def test_vm_whose_pilot_is_silent_is_deleted_after_idle_limit() -> None:
    silent = pilot(registered=NOW - 2000, heartbeat=NOW - 901)
    assert decide(vm(age=2000), silent, LIMITS, NOW).reason is DeletionReason.IDLE
    talking = pilot(registered=NOW - 2000, heartbeat=NOW - 10)
    assert not decide(vm(age=2000), talking, LIMITS, NOW).delete
    # Registered but no heartbeat yet: the registration counts as the last sign of life.
    assert not decide(vm(age=100), pilot(registered=NOW - 30), LIMITS, NOW).delete


def test_every_reason_has_a_text() -> None:
    assert set(DELETION_TEXT) == set(DeletionReason)


# ---- quotas ------------------------------------------------------------------------------------


def allowed(requested: int, **kw: object) -> tuple[int, str]:
    settings: dict[str, object] = {
        "ours": 0,
        "cores_per_vm": 2,
        "max_vms": 10,
        "max_cores": 0,
        "provider": ProviderLimits(),
        **kw,
    }
    result = vms_allowed(requested, **settings)  # type: ignore[arg-type]
    return result.count, result.limited_by


def test_quota_everything_fits() -> None:
    assert allowed(3) == (3, "")


def test_quota_max_vms_counts_this_queues_vms() -> None:
    count, why = allowed(5, ours=8)
    assert count == 2
    assert why.startswith("max_vms = 10")
    assert allowed(5, ours=12)[0] == 0


def test_quota_max_cores() -> None:
    count, why = allowed(5, ours=2, max_cores=9)  # 4 cores used, 5 left: 2 VMs of 2
    assert count == 2
    assert why.startswith("max_cores = 9")


def test_quota_provider_instances_and_cores() -> None:
    full = ProviderLimits(max_instances=20, used_instances=19)
    count, why = allowed(5, provider=full)
    assert (count, why) == (1, "the provider's instance quota (20)")
    cores = ProviderLimits(max_cores=16, used_cores=11)
    assert allowed(5, provider=cores) == (2, "the provider's core quota (16)")
    # OpenStack says -1 for unlimited; unknown is no limit either.
    assert allowed(5, provider=ProviderLimits(max_instances=-1, used_instances=500)) == (5, "")
    assert allowed(5, provider=ProviderLimits(max_instances=3, used_instances=9))[0] == 0


def test_quota_tightest_limit_wins() -> None:
    count, why = allowed(
        9,
        ours=1,
        max_vms=8,
        max_cores=100,
        provider=ProviderLimits(max_instances=5, used_instances=1),
    )
    assert count == 4
    assert "instance quota" in why


# ---- API errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        (None, "ConnectionError: refused", ApiErrorKind.TRANSIENT),
        (
            401,
            "AuthFailure: AWS was not able to validate the provided access credentials",
            ApiErrorKind.AUTH,
        ),
        (403, "SignatureDoesNotMatch: ...", ApiErrorKind.AUTH),
        (403, "UnauthorizedOperation: You are not authorized", ApiErrorKind.AUTH),
        (401, "Invalid credentials with the provider", ApiErrorKind.AUTH),
        (
            403,
            "Quota exceeded for instances: Requested 1, but already used 10",
            ApiErrorKind.QUOTA,
        ),
        (400, "InstanceLimitExceeded: You have requested more instances", ApiErrorKind.QUOTA),
        (400, "VcpuLimitExceeded: You have requested more vCPU capacity", ApiErrorKind.QUOTA),
        (500, "InsufficientInstanceCapacity: no capacity", ApiErrorKind.QUOTA),
        (503, "RequestLimitExceeded: Request limit exceeded.", ApiErrorKind.TRANSIENT),
        (429, "Too Many Requests", ApiErrorKind.TRANSIENT),
        (500, "InternalError", ApiErrorKind.TRANSIENT),
        (
            400,
            "InvalidAMIID.NotFound: The image id '[ami-x]' does not exist",
            ApiErrorKind.REFUSED,
        ),
        (400, "Invalid flavorRef provided.", ApiErrorKind.REFUSED),
    ],
)
def test_api_errors_are_classified(status: int | None, text: str, kind: ApiErrorKind) -> None:
    assert classify_api_error(status, text) is kind


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [0.0]
    for _ in range(6):
        delays.append(next_backoff(delays[-1], 60, 300))
    assert delays[1:] == [60, 120, 240, 300, 300, 300]
