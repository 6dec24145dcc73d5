"""Submitting one queue's pilots: mint their tokens, record them, submit, send the references.

Each pilot gets its own single-use registration token (central mints them for this
director's sites only); minting comes first so a refusal records nothing. Order matters for
durability: central's pilot record exists before the backend is asked, so a pilot that
starts is never unknown to central. The backend's references then go to central
(`UpdatePilots`) and to the journal, the director's local cache. Pilots the backend refused
are marked Aborted in central with the backend's error, in the same call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from central.models.pilot_states import PilotState
from gridpilot.logs import get_logger
from sitedirectors.base import (
    Backend,
    PilotLaunch,
    PilotQueue,
    SubmitOutcome,
    SubmitRequest,
    SubmitResult,
)
from sitedirectors.central_client import CentralClient, NewPilot, PilotStateUpdate
from sitedirectors.config import QueueSection
from sitedirectors.journal import Journal

log = get_logger(__name__)


@dataclass
class SubmissionReport:
    submitted: int = 0
    failed: int = 0
    deferred: int = 0
    # The first permanent error: set means the queue is failing.
    errors: list[str] = field(default_factory=list)


def pilot_arguments(
    queue: QueueSection, central: str, pilot_id: str, *, insecure: bool = False
) -> tuple[str, ...]:
    """The pilot's options for one pilot, without --work-dir, --token-file and --ca (the
    backend adds them)."""
    p = queue.pilot
    argv = [
        "--central",
        p.central or central,
        "--pilot-id",
        pilot_id,
        "--site",
        queue.site,
        "--ce",
        queue.ce,
        "--queue",
        queue.name,
        "--slots",
        str(queue.slots),
        "--memory-mb",
        str(queue.memory_mb),
        "--cpu-time",
        str(queue.cpu_time),
        "--idle-timeout",
        f"{p.idle_timeout:g}",
    ]
    # The pilot must offer what central's demand was computed for.
    if queue.platform:
        argv += ["--platform", queue.platform]
    if queue.tags:
        argv += ["--tags", ",".join(queue.tags)]
    if p.software_setup:
        argv += ["--software-setup", p.software_setup]
    if p.max_jobs > 0:
        argv += ["--max-jobs", str(p.max_jobs)]
    if insecure:
        argv.append("--insecure")
    return (*argv, *p.extra_args)


def token_lifetime(requested: float, cap: float) -> float:
    """The registration token lifetime to ask central for: the queue's (0 = central's
    default), capped by the backend's `max_token_lifetime` (0 = no cap)."""
    if cap <= 0:
        return requested
    return min(requested, cap) if requested > 0 else cap


def pilot_queue(queue: QueueSection) -> PilotQueue:
    return PilotQueue(
        name=queue.name,
        site=queue.site,
        ce=queue.ce,
        slots=queue.slots,
        memory_mb=queue.memory_mb,
        cpu_time=queue.cpu_time,
    )


def submit_pilots(
    *,
    queue: QueueSection,
    backend: Backend,
    count: int,
    client: CentralClient,
    journal: Journal,
    central: str,
    now: float,
    ca: Path | None = None,
    insecure: bool = False,
) -> SubmissionReport:
    """Submit `count` pilots to the queue. Raises CentralError when central cannot mint their
    tokens or record them (nothing is submitted then) or cannot take their references
    afterwards (the journal keeps them and the next cycle's monitoring sends them); backend
    exceptions propagate after the recorded pilots are marked Aborted."""
    report = SubmissionReport()
    if count <= 0:
        return report
    lifetime = token_lifetime(queue.pilot.token_lifetime, backend.max_token_lifetime)
    tokens = client.mint_pilot_tokens(queue, count, lifetime=lifetime)
    if len(tokens) < count:
        log.warning("pilots.fewer_tokens", queue=queue.name, asked=count, minted=len(tokens))
    pilot_ids = [uuid.uuid4().hex for _ in tokens]
    if not pilot_ids:
        return report
    client.record_pilots([NewPilot(pid, queue, queue.backend, submitted=now) for pid in pilot_ids])
    request = SubmitRequest(
        queue=pilot_queue(queue),
        pilots=tuple(
            PilotLaunch(
                pid,
                command=tuple(queue.pilot.command),
                arguments=pilot_arguments(queue, central, pid, insecure=insecure),
                environment=queue.pilot.environment,
                registration_token=token,
                ca=ca,
            )
            for pid, token in zip(pilot_ids, tokens, strict=True)
        ),
    )
    failure: Exception | None = None
    try:
        results = backend.submit(request)
    except Exception as exc:
        # The backend attempted nothing usable: all recorded pilots end here.
        failure = exc
        results = [SubmitResult.failed(pid, f"{type(exc).__name__}: {exc}") for pid in pilot_ids]
    _settle(
        queue=queue,
        pilot_ids=pilot_ids,
        results=results,
        client=client,
        journal=journal,
        report=report,
        now=now,
    )
    if failure is not None:
        raise failure
    return report


def _settle(
    *,
    queue: QueueSection,
    pilot_ids: list[str],
    results: list[SubmitResult],
    client: CentralClient,
    journal: Journal,
    report: SubmissionReport,
    now: float,
) -> None:
    """Send every pilot's outcome to central in one call: the reference of a submitted one
    (its state stays as recorded), Aborted with the reason for the others."""
    by_id = {r.pilot_id: r for r in results}
    updates: list[PilotStateUpdate] = []
    aborted = 0
    for pilot_id in pilot_ids:
        result = by_id.get(pilot_id) or SubmitResult.failed(pilot_id, "backend returned no result")
        if result.outcome is SubmitOutcome.OK and result.reference:
            journal.add(pilot_id, queue.name, now, result.reference)
            updates.append(PilotStateUpdate(pilot_id, None, reference=result.reference))
            report.submitted += 1
            log.info(
                "pilot.submitted", pilot_id=pilot_id, queue=queue.name, reference=result.reference
            )
            continue
        aborted += 1
        if result.outcome is SubmitOutcome.RETRY:
            report.deferred += 1
            reason = f"submission deferred: {result.error}"
        else:
            report.failed += 1
            reason = f"submission failed: {result.error or 'no reference returned'}"
            report.errors.append(result.error or "no reference returned")
        updates.append(PilotStateUpdate(pilot_id, PilotState.ABORTED, reason=reason))
    # The cache first: should central be unreachable now, the next cycle resends from it.
    journal.save()
    if aborted:
        log.warning(
            "pilots.not_submitted",
            queue=queue.name,
            count=aborted,
            first_reason=next(u.reason for u in updates if u.state is PilotState.ABORTED),
        )
    client.update_pilots(updates)
