"""The `cloud` backend: a VM factory (in the spirit of Vcycle) -- one VM per pilot on an EC2 or
OpenStack tenant, through Apache Libcloud (sitedirectors/cloud_provider.py).

Each VM is named `gridpilot-<pilot id>` and tagged with its pilot, this director and the queue
(sitedirectors/cloud_parse.py); its reference is the provider's node id. Its user data
(sitedirectors/cloud_init.py) fetches the pilot bundle from `bundle_url`, lets the start
script verify it against the director's SHA-256, starts the pilot as `pilot_user`, and powers
the VM off when the pilot exits. The states (cloud_parse's table): pending -> Waiting,
running -> Running, powered off -> Done (Failed when the provider stopped it, Aborted when
this director deleted it), error -> Failed, gone past `vanish_grace` -> Aborted "vanished".

Every cycle `status` makes one `list_nodes` call filtered by the tags; `reconcile` (reusing
that listing) deletes the VMs nobody needs: their pilot ended (central no longer lists it as
live), never registered within `boot_timeout`, passed `max_lifetime`, has been silent longer
than `idle_limit`; and VMs that powered off or are in error. Each deletion is logged
(`vm.deleted`, with pilot id, node id and reason) and recorded under `state_dir`, so `status`
answers Aborted with that reason afterwards (OpenStack forgets a deleted server at once).

Submissions respect `max_vms` and `max_cores` (this queue's VMs, counted by their tags) and
the tenant's limits as the provider states them; pilots beyond them are deferred (RETRY). API
errors: credentials refused -> FAILED naming the endpoint; throttling, 5xx, no connection ->
RETRY, and the backend leaves the API alone for `backoff` seconds, doubling up to
`backoff_max` while errors go on; a quota reached -> RETRY; anything else -> FAILED.

The registration token travels in the user data. Who can read it: the VM itself through the
instance metadata service (169.254.169.254) -- any process on it, unless `block_metadata`
has the pilot's user firewalled from it, which also keeps payloads away -- and holders of
this tenant's API credentials (the director's own). Other tenants cannot: metadata is served
only to the instance, and user data only through the tenant's API. Tags, console output and
logs never carry it. That is acceptable because the token is single-use (central refuses it
once the pilot has registered, seconds after boot) and short-lived: cloud queues mint it for
at most `MAX_TOKEN_LIFETIME` seconds whatever `[queues.pilot].token_lifetime` says
(`Backend.max_token_lifetime`; `boot_timeout` deletes a VM whose pilot did not register in
time anyway).

Backend options ([queues.backend_options]; credentials only through credentials_file):

    provider = "ec2"                 # or "openstack"
    credentials_file = "/etc/gridpilot/cloud.toml"   # mode 0600 (sitedirectors/cloud_options.py)
    endpoint = ""                    # EC2 API URL ("" = AWS); OpenStack: Keystone auth URL
    region = ""                      # EC2 region (us-east-1); OpenStack compute region
    auth_version = "3.x_password"    # OpenStack Keystone ("2.0_password" for v2)
    service_name = ""                # OpenStack compute service name ("" = libcloud's "nova")
    image = "ami-..."                # image id
    flavor = "t3.medium"             # instance type / flavor id or name
    key_name = ""                    # SSH key pair for operators
    network = ""                     # EC2 subnet id / OpenStack network id
    security_groups = []             # EC2 ids (sg-...) or names / OpenStack names
    tags = {}                        # extra tags (not gridpilot-*)
    director = ""                    # tag of this director's VMs; "" = the director's name
    max_vms = 10                     # VMs of this queue at once
    max_cores = 0                    # their cores (0 = no cap of ours)
    boot_timeout = 900.0             # s for a VM's pilot to register
    max_lifetime = 172800.0          # s, hard cap per VM
    idle_limit = 1800.0              # s without a heartbeat from a registered pilot
    vanish_grace = 120.0             # s a new VM may be missing from the listing
    backoff = 60.0                   # s without API calls after a transient error...
    backoff_max = 1800.0             # ...doubling up to this
    bundle_url = "https://.../{file_name}"   # {file_name}, {sha256}: the director's bundle
    vm_dir = "/var/lib/gridpilot"    # on the VM
    pilot_user = "gridpilot"         # created on the VM when missing
    block_metadata = true            # firewall the pilot's user from 169.254.169.254
    timeout = 60.0                   # s per API call
    state_dir = ""                   # default <director work_dir>/cloud/<queue>
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from gridpilot.logs import get_logger
from sitedirectors.base import (
    DEFAULT_LOG_CAP_BYTES,
    Backend,
    BackendConfigError,
    BackendContext,
    BackendError,
    BackendNotSupportedError,
    BackendStatus,
    LivePilot,
    PilotLaunch,
    SubmitRequest,
    SubmitResult,
)
from sitedirectors.bundle import PilotBundle
from sitedirectors.cloud_init import VmPilot, render_user_data
from sitedirectors.cloud_options import CloudOptions, convert_options, load_credentials
from sitedirectors.cloud_parse import (
    ApiErrorKind,
    DeletionReason,
    Lifecycle,
    ProviderLimits,
    Vm,
    VmRecord,
    decide,
    deleted_record,
    next_backoff,
    to_status,
    vm_name,
    vm_tags,
    vms_allowed,
)
from sitedirectors.cloud_provider import (
    CloudApiError,
    CloudProvider,
    ConsoleNotSupportedError,
    NewVm,
    open_provider,
)

__all__ = ["MAX_TOKEN_LIFETIME", "CloudBackend", "CloudOptions", "create_cloud_backend"]

log = get_logger(__name__)

# The longest registration token a cloud queue should mint (seconds): see the docstring.
MAX_TOKEN_LIFETIME = 900.0
# status() and reconcile() of one cycle share one listing younger than this (seconds).
_LISTING_REUSE = 2.0
RECORDS_FILE = "vms.json"


class _Records:
    """node id -> VmRecord, in one JSON file written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: dict[str, VmRecord] = {}
        try:
            self.items = msgspec.json.decode(path.read_bytes(), type=dict[str, VmRecord])
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("cloud.records_unreadable", path=str(path), error=str(exc))

    def save(self) -> None:
        """Best effort: without the file, only the reasons of deletions and "vanished" are
        lost (VMs are found by their tags); the VMs the cycle made must not be lost."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_bytes(msgspec.json.encode(self.items))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cloud.records_not_saved", path=str(self.path), error=str(exc))


class CloudBackend(Backend):
    name = "cloud"
    # Read by the director's token minting once base.Backend has it (see the report).
    max_token_lifetime = MAX_TOKEN_LIFETIME

    def __init__(
        self,
        options: CloudOptions,
        provider: CloudProvider,
        *,
        director: str,
        queue: str,
        state_dir: Path,
        bundle: PilotBundle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.provider = provider
        self.director = director
        self.queue = queue
        self.bundle = bundle
        self._clock = clock
        self._records = _Records(state_dir / RECORDS_FILE)
        self._lifecycle = Lifecycle(
            boot_timeout=options.boot_timeout,
            max_lifetime=options.max_lifetime,
            idle_limit=options.idle_limit,
            grace=options.vanish_grace,
        )
        self._listing: dict[str, Vm] = {}
        self._listed_at: float | None = None
        self._backoff = 0.0
        self._backoff_until = 0.0
        self._last_error = ""

    # ---- API calls, back-off, listing ----

    def backing_off(self) -> str:
        """Why the API is left alone now ("" when it is not)."""
        now = self._clock()
        if now >= self._backoff_until:
            return ""
        return (
            f"backing off from {self.provider.endpoint} for {self._backoff_until - now:.0f} s "
            f"more after: {self._last_error}"
        )

    def _failed(self, exc: CloudApiError) -> None:
        if exc.kind is not ApiErrorKind.TRANSIENT:
            return
        self._backoff = next_backoff(self._backoff, self.options.backoff, self.options.backoff_max)
        self._backoff_until = self._clock() + self._backoff
        self._last_error = str(exc)
        log.warning("cloud.backoff", queue=self.queue, seconds=self._backoff, error=str(exc))

    def _succeeded(self) -> None:
        self._backoff, self._backoff_until = 0.0, 0.0

    def _list(self, *, reuse: bool = False) -> dict[str, Vm]:
        """This queue's VMs by node id: one API call (or the listing of this very cycle)."""
        now = time.monotonic()
        if reuse and self._listed_at is not None and now - self._listed_at < _LISTING_REUSE:
            return self._listing
        vms = self.provider.list_vms(self.director, self.queue)
        self._succeeded()
        self._listing = {vm.node_id: vm for vm in vms}
        self._listed_at = now
        return self._listing

    def _forget_listing(self) -> None:
        self._listed_at = None

    # ---- submit ----

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        pilots = request.pilots
        waiting = self.backing_off()
        if waiting:
            return [SubmitResult.retry(p.pilot_id, waiting) for p in pilots]
        try:
            vms = self._list()
            limits = self._provider_limits()
            cores = self.provider.cores_per_vm() or request.queue.slots
        except CloudApiError as exc:
            self._failed(exc)
            return [self._result(p.pilot_id, exc) for p in pilots]
        ours = sum(1 for vm in vms.values() if vm.state != "terminated")
        allowance = vms_allowed(
            len(pilots),
            ours=ours,
            cores_per_vm=cores,
            max_vms=self.options.max_vms,
            max_cores=self.options.max_cores,
            provider=limits,
        )
        results: list[SubmitResult] = []
        stop: CloudApiError | None = None
        for index, launch in enumerate(pilots):
            if stop is not None:
                results.append(self._result(launch.pilot_id, stop))
            elif index >= allowance.count:
                message = f"quota reached: {allowance.limited_by}; pilot deferred"
                results.append(SubmitResult.retry(launch.pilot_id, message))
            else:
                try:
                    results.append(self._create(launch))
                except CloudApiError as exc:
                    self._failed(exc)
                    results.append(self._result(launch.pilot_id, exc))
                    if exc.kind in (ApiErrorKind.AUTH, ApiErrorKind.TRANSIENT):
                        stop = exc  # the next calls would fail the same way
        self._forget_listing()
        self._records.save()
        deferred = len(pilots) - allowance.count
        if deferred > 0:
            log.info("cloud.quota", queue=self.queue, deferred=deferred, why=allowance.limited_by)
        return results

    def _provider_limits(self) -> ProviderLimits:
        """The tenant's limits; a provider that will not say is no reason not to submit."""
        try:
            return self.provider.limits()
        except CloudApiError as exc:
            if exc.kind in (ApiErrorKind.AUTH, ApiErrorKind.TRANSIENT):
                raise
            log.debug("cloud.no_limits", queue=self.queue, error=str(exc))
            return ProviderLimits()

    def _result(self, pilot_id: str, exc: CloudApiError) -> SubmitResult:
        if exc.kind is ApiErrorKind.AUTH:
            return SubmitResult.failed(
                pilot_id, f"authentication refused by {exc.endpoint}: {exc.detail}"
            )
        if exc.kind in (ApiErrorKind.TRANSIENT, ApiErrorKind.QUOTA):
            return SubmitResult.retry(pilot_id, str(exc))
        return SubmitResult.failed(pilot_id, str(exc))

    def _create(self, launch: PilotLaunch) -> SubmitResult:
        pilot_id = launch.pilot_id
        try:
            user_data = render_user_data(self._vm_pilot(launch))
        except (ValueError, OSError) as exc:
            return SubmitResult.failed(pilot_id, str(exc))
        size = len(user_data.encode())
        if size > self.provider.user_data_limit:
            return SubmitResult.failed(
                pilot_id,
                f"user data of {size} bytes exceeds {self.provider.kind}'s limit of "
                f"{self.provider.user_data_limit}",
            )
        submitted = self._clock()
        tags = vm_tags(pilot_id, self.director, self.queue, submitted, self.options.tags)
        vm = self.provider.create_vm(NewVm(vm_name(pilot_id), tags, user_data))
        self._records.items[vm.node_id] = VmRecord(pilot_id=pilot_id, submitted=submitted)
        log.info(
            "vm.created",
            pilot_id=pilot_id,
            node_id=vm.node_id,
            queue=self.queue,
            provider=self.provider.kind,
        )
        return SubmitResult.ok(pilot_id, vm.node_id)

    def _vm_pilot(self, launch: PilotLaunch) -> VmPilot:
        bundle_url = sha256 = file_name = ""
        if not launch.command:
            if self.bundle is None or not self.options.bundle_url:
                raise ValueError(
                    "no pilot command, and no backend_options.bundle_url with "
                    "director.pilot_bundle to fetch the pilot from"
                )
            sha256, file_name = self.bundle.sha256, self.bundle.file_name
            bundle_url = self.bundle.url_from(self.options.bundle_url)
        return VmPilot(
            pilot_id=launch.pilot_id,
            arguments=launch.arguments,
            command=launch.command,
            environment=launch.environment,
            token=launch.registration_token,
            ca_pem=launch.ca.read_text(encoding="utf-8") if launch.ca is not None else "",
            bundle_url=bundle_url,
            bundle_sha256=sha256,
            bundle_file_name=file_name,
            vm_dir=self.options.vm_dir,
            pilot_user=self.options.pilot_user,
            block_metadata=self.options.block_metadata,
        )

    # ---- status ----

    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        try:
            vms = self._list(reuse=True)
        except CloudApiError as exc:
            self._failed(exc)
            raise BackendError(self.name, "status", str(exc)) from exc
        now = self._clock()
        return {
            ref: to_status(
                ref, vms.get(ref), self._records.items.get(ref), now, self.options.vanish_grace
            )
            for ref in references
        }

    # ---- deletion: cancel, reconcile, cleanup ----

    def _delete(self, vm: Vm | None, node_id: str, reason: DeletionReason, detail: str) -> None:
        """Destroy the VM and record why. Raises CloudApiError."""
        self.provider.destroy_vm(node_id)
        now = self._clock()
        record = self._records.items.get(node_id)
        if record is None and vm is not None:
            record = VmRecord(pilot_id=vm.pilot_id, submitted=vm.submitted)
        if record is not None:
            self._records.items[node_id] = deleted_record(record, vm, reason, now)
        log.info(
            "vm.deleted",
            pilot_id=record.pilot_id if record else "",
            node_id=node_id,
            queue=self.queue,
            reason=reason.value,
            detail=detail,
        )

    def cancel(self, references: Sequence[str]) -> None:
        try:
            vms = self._list()
            for ref in references:
                vm = vms.get(ref)
                if vm is None or vm.state == "terminated":
                    continue  # gone or ended already: nothing to stop
                self._delete(vm, ref, DeletionReason.CANCELLED, "cancel")
        except CloudApiError as exc:
            self._failed(exc)
            raise BackendError(self.name, "cancel", str(exc)) from exc
        finally:
            self._forget_listing()
            self._records.save()

    def reconcile(self, live: Sequence[LivePilot], now: float) -> None:
        waiting = self.backing_off()
        if waiting:
            log.info("cloud.reconcile_skipped", queue=self.queue, reason=waiting)
            return
        by_pilot = {pilot.pilot_id: pilot for pilot in live}
        try:
            vms = self._list(reuse=True)
            for node_id in [n for n, r in self._records.items.items() if r.cleaned]:
                if node_id not in vms:
                    del self._records.items[node_id]  # the provider forgot it too
            for vm in list(vms.values()):
                verdict = decide(vm, by_pilot.get(vm.pilot_id), self._lifecycle, now)
                if not verdict.delete or verdict.reason is None:
                    continue
                try:
                    self._delete(vm, vm.node_id, verdict.reason, verdict.detail)
                except CloudApiError as exc:
                    if exc.kind in (ApiErrorKind.AUTH, ApiErrorKind.TRANSIENT):
                        raise
                    # This VM only (the provider refuses to delete it): the others go on.
                    log.warning("vm.delete_failed", node_id=vm.node_id, error=str(exc))
        except CloudApiError as exc:
            self._failed(exc)
            raise BackendError(self.name, "reconcile", str(exc)) from exc
        finally:
            self._forget_listing()
            self._records.save()

    def cleanup(self, references: Sequence[str]) -> None:
        try:
            vms = self._list()
            for ref in references:
                vm = vms.get(ref)
                if vm is not None and not vm.powered_off:
                    log.warning("pilot.cleanup_skipped", reference=ref, reason="VM still running")
                    continue
                if vm is not None and vm.state != "terminated":
                    self._delete(vm, ref, DeletionReason.CLEANUP, "cleanup")
                if vm is None:
                    self._records.items.pop(ref, None)
                else:
                    # EC2 lists terminated VMs for a while: remember it was cleaned up.
                    record = self._records.items.get(ref) or VmRecord(
                        pilot_id=vm.pilot_id, submitted=vm.submitted
                    )
                    self._records.items[ref] = msgspec.structs.replace(record, cleaned=True)
        except CloudApiError as exc:
            self._failed(exc)
            raise BackendError(self.name, "cleanup", str(exc)) from exc
        finally:
            self._forget_listing()
            self._records.save()

    # ---- output ----

    def fetch_output(self, reference: str, max_bytes: int = DEFAULT_LOG_CAP_BYTES) -> str:
        """The VM's console output (the user data prints the pilot's log tail there)."""
        try:
            text = self.provider.console_output(reference)
        except ConsoleNotSupportedError as exc:
            raise BackendNotSupportedError(self.name, "fetch_output") from exc
        except CloudApiError as exc:
            raise BackendError(self.name, "fetch_output", str(exc)) from exc
        data = text.encode()
        if len(data) <= max_bytes:
            return text
        return data[len(data) - max_bytes :].decode(errors="ignore")


# ---- factory -----------------------------------------------------------------------------------


def create_cloud_backend(context: BackendContext) -> CloudBackend:
    """A cloud backend for one queue. Makes no API call: an unreachable cloud shows in the
    queue's health at its first cycle, not as a director that cannot start."""
    options = convert_options(context.options, context.queue)
    where = f"queues[{context.queue}].backend_options"
    credentials = load_credentials(options, context.queue)
    director = options.director or context.director
    if not director:
        raise BackendConfigError(f"{where}.director must name this director (tags its VMs)")
    if options.bundle_url and context.bundle is None:
        raise BackendConfigError(
            f"{where}.bundle_url needs director.pilot_bundle (VMs verify its checksum)"
        )
    state_dir = Path(options.state_dir or Path(context.work_dir) / "cloud" / context.queue)
    with contextlib.suppress(OSError):
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    provider = open_provider(options, credentials)
    return CloudBackend(
        options,
        provider,
        director=director,
        queue=context.queue,
        state_dir=state_dir,
        bundle=context.bundle,
    )
