"""The director's view of central (SiteDirectorService, and AuthService for pilot tokens):
typed calls, proto kept inside; every call carries the director's token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from central.models.pilot_states import FINAL_PILOT_STATES, PilotState
from gridpilot.channel import ClientSecurity, open_sync_channel
from gridpilot.enums import pilot_state_from_proto, pilot_state_to_proto
from gridpilot.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    sitedirectors_pb2,
    sitedirectors_pb2_grpc,
)
from sitedirectors.config import QueueSection
from sitedirectors.demand import QueueDemandView

# Central's cap on registration tokens per MintPilotTokens call.
MAX_TOKENS_PER_CALL = 1000

ACTIVE_PILOT_STATES: tuple[PilotState, ...] = tuple(
    s for s in PilotState if s not in FINAL_PILOT_STATES
)


class CentralError(RuntimeError):
    """A call to central failed (unreachable, refused, timed out)."""

    def __init__(self, method: str, code: str, details: str) -> None:
        super().__init__(f"central {method} failed: {code}: {details}")
        self.method = method
        self.code = code


@dataclass(frozen=True)
class NewPilot:
    pilot_id: str
    queue: QueueSection
    backend: str
    submitted: float


@dataclass(frozen=True)
class PilotStateUpdate:
    """One change to a pilot's record; None/empty fields keep what central has."""

    pilot_id: str
    state: PilotState | None
    reason: str = ""
    log_tail: str = ""
    # The backend's reference, sent once it is known (after submission).
    reference: str = ""


@dataclass(frozen=True)
class KnownPilot:
    pilot_id: str
    reference: str
    queue: str
    state: PilotState
    submitted: float
    # 0 when it has not happened.
    registered: float = 0.0
    last_heartbeat: float = 0.0


@dataclass(frozen=True)
class QueueReport:
    """How one queue fared this cycle, for operators (`gridpilot admin queues`)."""

    queue: QueueSection
    backend: str
    # "ok", "failing" or "disabled".
    health: str
    error: str = ""
    skip_cycles_left: int = 0
    failing_since: float = 0.0
    submitted: int = 0


_HEALTH = {
    "ok": sitedirectors_pb2.QUEUE_HEALTH_OK,
    "failing": sitedirectors_pb2.QUEUE_HEALTH_FAILING,
    "disabled": sitedirectors_pb2.QUEUE_HEALTH_DISABLED,
}


def resource_description(queue: QueueSection) -> common_pb2.ResourceDescription:
    """What one pilot of the queue offers, as central's matcher understands it."""
    return common_pb2.ResourceDescription(
        site=queue.site,
        ce=queue.ce,
        queue=queue.name,
        platform=queue.platform,
        cpu_time_left=queue.cpu_time,
        cores=queue.slots,
        memory_mb=queue.memory_mb,
        tags=queue.tags,
    )


class CentralClient:
    """Blocking calls; each waits for a (re)connection up to `timeout` instead of failing fast,
    so a director rides out a central restart within one call."""

    def __init__(
        self, target: str, director: str, security: ClientSecurity, timeout: float = 30.0
    ) -> None:
        self.director = director
        self.timeout = timeout
        self._channel = open_sync_channel(target, security)
        self._stub = sitedirectors_pb2_grpc.SiteDirectorServiceStub(self._channel)
        self._auth = auth_pb2_grpc.AuthServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def mint_pilot_tokens(
        self, queue: QueueSection, count: int, *, lifetime: float | None = None
    ) -> list[str]:
        """Single-use registration tokens for `count` pilots of the queue, valid `lifetime`
        seconds (None: the queue's `pilot.token_lifetime`; 0: central's default)."""
        tokens: list[str] = []
        while len(tokens) < count:
            request = auth_pb2.MintPilotTokensRequest(
                site=queue.site,
                ce=queue.ce,
                queue=queue.name,
                count=min(count - len(tokens), MAX_TOKENS_PER_CALL),
                lifetime=queue.pilot.token_lifetime if lifetime is None else lifetime,
            )
            try:
                response = self._auth.MintPilotTokens(
                    request, timeout=self.timeout, wait_for_ready=True
                )
            except grpc.RpcError as exc:
                raise _central_error("MintPilotTokens", exc) from exc
            if not response.tokens:
                break
            tokens += response.tokens
        return tokens

    def get_demand(self, queues: Sequence[QueueSection]) -> dict[str, QueueDemandView]:
        request = sitedirectors_pb2.GetPilotDemandRequest(
            queues=[resource_description(q) for q in queues]
        )
        try:
            response = self._stub.GetPilotDemand(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _central_error("GetPilotDemand", exc) from exc
        return {
            d.queue: QueueDemandView(
                eligible_jobs=d.eligible_jobs,
                pilots_waiting=d.pilots_submitted,
                pilots_running=d.pilots_running,
                pilots_idle=d.pilots_idle,
                blocked=d.blocked,
            )
            for d in response.demands
        }

    def record_pilots(self, pilots: Sequence[NewPilot]) -> None:
        request = sitedirectors_pb2.RecordPilotsRequest(
            pilots=[
                sitedirectors_pb2.PilotRecord(
                    pilot_id=p.pilot_id,
                    site=p.queue.site,
                    ce=p.queue.ce,
                    queue=p.queue.name,
                    backend=p.backend,
                    director=self.director,
                    state=pilot_state_to_proto(PilotState.SUBMITTED),
                    submitted_unix=p.submitted,
                )
                for p in pilots
            ]
        )
        try:
            self._stub.RecordPilots(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _central_error("RecordPilots", exc) from exc

    def update_pilots(self, updates: Sequence[PilotStateUpdate]) -> None:
        if not updates:
            return
        request = sitedirectors_pb2.UpdatePilotsRequest(
            updates=[
                sitedirectors_pb2.PilotUpdate(
                    pilot_id=u.pilot_id,
                    state=(
                        common_pb2.PILOT_STATE_UNSPECIFIED
                        if u.state is None
                        else pilot_state_to_proto(u.state)
                    ),
                    status_reason=u.reason,
                    log_tail=u.log_tail,
                    reference=u.reference,
                )
                for u in updates
            ]
        )
        try:
            self._stub.UpdatePilots(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _central_error("UpdatePilots", exc) from exc

    def list_pilots(self, states: Sequence[PilotState] = ()) -> list[KnownPilot]:
        """This director's pilots in the given states (all states when empty)."""
        request = sitedirectors_pb2.ListPilotsRequest(
            director=self.director, states=[pilot_state_to_proto(s) for s in states]
        )
        try:
            response = self._stub.ListPilots(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _central_error("ListPilots", exc) from exc
        return [
            KnownPilot(
                pilot_id=p.pilot_id,
                reference=p.reference,
                queue=p.queue,
                state=pilot_state_from_proto(p.state),
                submitted=p.submitted_unix,
                registered=p.registered_unix,
                last_heartbeat=p.last_heartbeat_unix,
            )
            for p in response.pilots
        ]

    def report_queues(self, reports: Sequence[QueueReport]) -> None:
        request = sitedirectors_pb2.ReportQueuesRequest(
            queues=[
                sitedirectors_pb2.QueueStatus(
                    queue=r.queue.name,
                    site=r.queue.site,
                    ce=r.queue.ce,
                    backend=r.backend,
                    health=_HEALTH[r.health],
                    error=r.error,
                    skip_cycles_left=r.skip_cycles_left,
                    failing_since_unix=r.failing_since,
                    submitted_last_cycle=r.submitted,
                )
                for r in reports
            ]
        )
        try:
            self._stub.ReportQueues(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _central_error("ReportQueues", exc) from exc


def _central_error(method: str, exc: grpc.RpcError) -> CentralError:
    code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    return CentralError(method, code, details)
