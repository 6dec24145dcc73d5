"""The `cloud` backend's decisions as pure functions: VM states, names and tags, a VM's fate,
quota arithmetic, and how an API error is classified. No libcloud here: the provider
adapter (sitedirectors/cloud_provider.py) turns libcloud's nodes into `Vm`s first.

State table: libcloud's shared `NodeState` vocabulary -> `PilotState`. A VM that powered
off (STOPPED, TERMINATED) is Done: the pilot's exit ends in `poweroff` (see
sitedirectors/cloud_init.py), and a cloud API carries no exit status -- the pilot reports
its own end, with its exit status, to central before it powers the VM off. Two exceptions:
a VM the provider stopped itself (EC2 state reason `Server.*`: spot reclaim, host failure,
no capacity) is Failed, and a VM this director deleted (cancel, reconcile) is Aborted with
the reason it was deleted for, as recorded when it was deleted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import msgspec

from central.models.pilot_states import PilotState
from sitedirectors.base import BackendStatus, LivePilot

# libcloud NodeState values -> the common vocabulary (see `vm_status` for the final ones).
NODE_STATES: dict[str, PilotState] = {
    "pending": PilotState.WAITING,
    "starting": PilotState.WAITING,
    "running": PilotState.RUNNING,
    "rebooting": PilotState.RUNNING,
    "reconfiguring": PilotState.RUNNING,
    "updating": PilotState.RUNNING,
    "migrating": PilotState.RUNNING,
    "normal": PilotState.RUNNING,
    # Powering off or paused by an operator: not ended yet; reconcile's idle_limit and
    # max_lifetime catch a VM that stays so.
    "stopping": PilotState.RUNNING,
    "suspended": PilotState.RUNNING,
    "paused": PilotState.RUNNING,
    "stopped": PilotState.DONE,
    "terminated": PilotState.DONE,
    "error": PilotState.FAILED,
    "unknown": PilotState.UNKNOWN,
}
# EC2 states libcloud maps to "unknown" although their meaning is clear.
EC2_NATIVE_STATES: dict[str, str] = {"shutting-down": "stopping", "stopping": "stopping"}
POWERED_OFF = frozenset({"stopped", "terminated"})

# Tags (EC2) / server metadata (OpenStack) on every VM of the backend.
TAG_PREFIX = "gridpilot-"
TAG_PILOT = "gridpilot-pilot"
TAG_DIRECTOR = "gridpilot-director"
TAG_QUEUE = "gridpilot-queue"
# When the director created it (seconds since the epoch, the director's clock).
TAG_SUBMITTED = "gridpilot-submitted"

VANISHED_REASON = "vanished: the VM no longer exists at the provider"


class DeletionReason(StrEnum):
    """Why the director deleted a VM (logged, and the pilot's reason in central)."""

    CANCELLED = "cancelled"
    STOPPED = "vm_stopped"
    VM_ERROR = "vm_error"
    PILOT_ENDED = "pilot_ended"
    BOOT_TIMEOUT = "boot_timeout"
    MAX_LIFETIME = "max_lifetime"
    IDLE = "idle"
    CLEANUP = "cleanup"


DELETION_TEXT: dict[DeletionReason, str] = {
    DeletionReason.CANCELLED: "cancelled: VM deleted by the director",
    DeletionReason.STOPPED: "VM powered off; deleted by the director",
    DeletionReason.VM_ERROR: "VM in error at the provider; deleted by the director",
    DeletionReason.PILOT_ENDED: "central no longer lists the pilot as live; VM deleted",
    DeletionReason.BOOT_TIMEOUT: "pilot never registered within boot_timeout; VM deleted",
    DeletionReason.MAX_LIFETIME: "VM reached max_lifetime; deleted by the director",
    DeletionReason.IDLE: "pilot silent for longer than idle_limit; VM deleted",
    DeletionReason.CLEANUP: "VM deleted at cleanup",
}


@dataclass(frozen=True)
class Vm:
    """One VM as the provider lists it."""

    node_id: str
    name: str
    # A libcloud NodeState value ("running", "stopped", ...).
    state: str
    # The provider's own word for it (EC2 "shutting-down", OpenStack "SHUTOFF").
    native: str
    tags: Mapping[str, str]
    # Why it stopped, when the provider says (EC2 stateReason code, OpenStack fault).
    state_reason: str = ""

    @property
    def pilot_id(self) -> str:
        return self.tags.get(TAG_PILOT, "")

    @property
    def submitted(self) -> float:
        """When the director created it; 0 when the tag is missing or garbled."""
        try:
            value = float(self.tags.get(TAG_SUBMITTED, "0"))
        except ValueError:
            return 0.0
        return value if math.isfinite(value) else 0.0

    @property
    def powered_off(self) -> bool:
        return self.state in POWERED_OFF


class VmRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the backend keeps per VM (node id): its pilot, when it was created, and --
    once the director deleted it -- the state and reason `status` answers from then on."""

    pilot_id: str
    submitted: float
    deleted_at: float = 0.0
    final_state: str = ""
    reason: str = ""
    # Cleaned up: the director asks no more (kept while EC2 still lists the VM).
    cleaned: bool = False


def normalise_state(libcloud_state: str, native: str) -> str:
    """libcloud's state, refined where libcloud says "unknown" for a known EC2 state."""
    if libcloud_state == "unknown":
        return EC2_NATIVE_STATES.get(native, libcloud_state)
    return libcloud_state


def vm_name(pilot_id: str) -> str:
    return f"gridpilot-{pilot_id}"


def vm_tags(
    pilot_id: str, director: str, queue: str, submitted: float, extra: Mapping[str, str]
) -> dict[str, str]:
    """The site's own tags, then ours (which the site's cannot override)."""
    return {
        **extra,
        TAG_PILOT: pilot_id,
        TAG_DIRECTOR: director,
        TAG_QUEUE: queue,
        TAG_SUBMITTED: f"{submitted:.3f}",
    }


def owned_by(tags: Mapping[str, str], director: str, queue: str) -> bool:
    return tags.get(TAG_DIRECTOR) == director and tags.get(TAG_QUEUE) == queue


def vm_status(vm: Vm) -> BackendStatus:
    """The pilot's state from the VM alone (see the module docstring for final states)."""
    state = NODE_STATES.get(vm.state, PilotState.UNKNOWN)
    if vm.powered_off:
        if vm.state_reason.startswith("Server."):
            return BackendStatus(
                PilotState.FAILED,
                vm.native,
                reason=f"the provider stopped the VM: {vm.state_reason}",
            )
        return BackendStatus(
            PilotState.DONE, vm.native, reason="the VM powered off (its pilot exited)"
        )
    if state is PilotState.FAILED:
        detail = f": {vm.state_reason}" if vm.state_reason else ""
        return BackendStatus(
            state, vm.native, reason=f"the provider reports the VM in error{detail}"
        )
    if state is PilotState.UNKNOWN:
        return BackendStatus(state, vm.native, reason=f"provider state {vm.native!r}")
    return BackendStatus(state, vm.native)


def to_status(
    reference: str, vm: Vm | None, record: VmRecord | None, now: float, vanish_grace: float
) -> BackendStatus:
    """The pilot's state from the provider's listing (`vm`, None when not listed) and the
    backend's record of the VM."""
    if record is not None and record.cleaned:
        return BackendStatus(PilotState.UNKNOWN, "unknown", reason=f"VM {reference} cleaned up")
    if record is not None and record.deleted_at:
        return BackendStatus(PilotState(record.final_state), "deleted", reason=record.reason)
    if vm is not None:
        return vm_status(vm)
    if record is None:
        return BackendStatus(
            PilotState.UNKNOWN, "unknown", reason=f"no record of VM {reference} (cleaned up?)"
        )
    if now - record.submitted < vanish_grace:
        return BackendStatus(
            PilotState.UNKNOWN, "unknown", reason="not (yet) listed by the provider"
        )
    return BackendStatus(PilotState.ABORTED, "vanished", reason=VANISHED_REASON)


def deleted_record(record: VmRecord, vm: Vm | None, reason: DeletionReason, now: float) -> VmRecord:
    """The record of a VM the director deletes now. A pilot that had already ended (its VM
    powered off, or in error) keeps that end; a live one is Aborted with the reason."""
    if record.deleted_at:
        return record
    before = vm_status(vm) if vm is not None else None
    state: PilotState
    if before is not None and before.state in (PilotState.DONE, PilotState.FAILED):
        state, text = before.state, f"{before.reason}; deleted by the director ({reason.value})"
    else:
        state, text = PilotState.ABORTED, DELETION_TEXT[reason]
    return msgspec.structs.replace(record, deleted_at=now, final_state=state.value, reason=text)


# ---- lifecycle ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lifecycle:
    boot_timeout: float
    max_lifetime: float
    idle_limit: float
    # A VM younger than this is never "ended": central may not list its pilot yet.
    grace: float


@dataclass(frozen=True)
class Verdict:
    delete: bool
    reason: DeletionReason | None = None
    detail: str = ""


KEEP = Verdict(False)


def decide(vm: Vm, pilot: LivePilot | None, limits: Lifecycle, now: float) -> Verdict:
    """Keep or delete one of the queue's VMs, given central's view of its pilot (None: not
    live in central) -- the first reason that applies, in this order."""
    if vm.state == "terminated":
        return KEEP
    if vm.state == "stopped":
        return Verdict(True, DeletionReason.STOPPED, f"state {vm.native}")
    if vm.state == "error":
        return Verdict(True, DeletionReason.VM_ERROR, vm.state_reason or vm.native)
    age = now - vm.submitted if vm.submitted else 0.0
    if pilot is None:
        if age >= limits.grace:
            return Verdict(True, DeletionReason.PILOT_ENDED, f"age {age:.0f} s")
        return KEEP
    if age > limits.max_lifetime:
        return Verdict(True, DeletionReason.MAX_LIFETIME, f"age {age:.0f} s")
    if not pilot.registered:
        if age > limits.boot_timeout:
            return Verdict(True, DeletionReason.BOOT_TIMEOUT, f"age {age:.0f} s")
        return KEEP
    silent = now - max(pilot.registered, pilot.last_heartbeat)
    if silent > limits.idle_limit:
        return Verdict(True, DeletionReason.IDLE, f"silent {silent:.0f} s")
    return KEEP


# ---- quotas ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderLimits:
    """What the provider allows the tenant (None: the provider does not say)."""

    max_instances: int | None = None
    used_instances: int | None = None
    max_cores: int | None = None
    used_cores: int | None = None


@dataclass(frozen=True)
class Allowance:
    count: int
    # Why not more ("" when every requested VM fits).
    limited_by: str = ""


def _free(maximum: int | None, used: int | None) -> int | None:
    """Room under a provider limit; None when unlimited or unknown (OpenStack: -1)."""
    if maximum is None or maximum < 0:
        return None
    return max(0, maximum - (used or 0))


def vms_allowed(
    requested: int,
    *,
    ours: int,
    cores_per_vm: int,
    max_vms: int,
    max_cores: int,
    provider: ProviderLimits,
) -> Allowance:
    """How many of `requested` new VMs fit: under max_vms (this queue's VMs, `ours`), under
    max_cores (0 = no cap of ours) and under the tenant's limits at the provider."""
    cores = max(1, cores_per_vm)
    caps: list[tuple[int, str]] = [
        (max_vms - ours, f"max_vms = {max_vms} ({ours} VMs of this queue exist)")
    ]
    if max_cores > 0:
        caps.append(
            (
                (max_cores - ours * cores) // cores,
                f"max_cores = {max_cores} ({ours} VMs x {cores} cores exist)",
            )
        )
    free_instances = _free(provider.max_instances, provider.used_instances)
    if free_instances is not None:
        caps.append((free_instances, f"the provider's instance quota ({provider.max_instances})"))
    free_cores = _free(provider.max_cores, provider.used_cores)
    if free_cores is not None:
        caps.append((free_cores // cores, f"the provider's core quota ({provider.max_cores})"))
    count, limited_by = requested, ""
    for cap, why in caps:
        if max(0, cap) < count:
            count, limited_by = max(0, cap), why
    return Allowance(count, limited_by)


# ---- API errors --------------------------------------------------------------------------------


class ApiErrorKind(StrEnum):
    AUTH = "auth"  # credentials refused: permanent, the queue fails
    QUOTA = "quota"  # the tenant is full: retry later, no back-off
    TRANSIENT = "transient"  # throttled, 5xx, connection: retry later and back off
    REFUSED = "refused"  # the request is wrong (bad image, flavor...): permanent


_AUTH_CODES = (
    "authfailure",
    "invalidclienttokenid",
    "signaturedoesnotmatch",
    "optinrequired",
    "unrecognizedclientexception",
    "unable to authenticate",
    "invalid credentials",
    "authentication required",
)
_QUOTA_CODES = (
    "instancelimitexceeded",
    "vcpulimitexceeded",
    "insufficientinstancecapacity",
    "maxspotinstancecountexceeded",
    "quota exceeded",
    "quota_exceeded",
    "overlimit",
)
_TRANSIENT_CODES = (
    "requestlimitexceeded",
    "throttling",
    "serviceunavailable",
    "internalerror",
    "unavailable",
    "rate limit",
)


def classify_api_error(status: int | None, text: str) -> ApiErrorKind:
    """What kind of failure an API answer is: `status` is the HTTP status (None when no
    answer came: connection refused, timeout, TLS failure), `text` the error's code and
    message as the provider gave them."""
    lowered = text.lower()
    if status is None:
        return ApiErrorKind.TRANSIENT
    if any(code in lowered for code in _QUOTA_CODES):
        return ApiErrorKind.QUOTA
    if status == 401 or any(code in lowered for code in _AUTH_CODES):
        return ApiErrorKind.AUTH
    if status == 429 or status >= 500 or any(code in lowered for code in _TRANSIENT_CODES):
        return ApiErrorKind.TRANSIENT
    if status == 403:
        return ApiErrorKind.AUTH
    return ApiErrorKind.REFUSED


def next_backoff(previous: float, initial: float, maximum: float) -> float:
    """The next back-off delay after an API error: `initial`, then doubling up to `maximum`."""
    if previous <= 0:
        return min(initial, maximum)
    return min(previous * 2, maximum)
