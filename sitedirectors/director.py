"""The director loop: per cycle, ask central for demand, submit pilots, track them.

One cycle, for every queue not sitting out a failure:

1. backend states of this director's non-final pilots -> `UpdatePilots`, log tails of failed
   pilots, cleanup of long-finished ones (sitedirectors/monitor.py) -- first, so pilots that
   ended no longer count as waiting in the demand;
2. `GetPilotDemand` with each enabled queue's resource description (one call for all);
3. `pilots_to_submit` (sitedirectors/demand.py) -> record in central, submit, keep references
   (sitedirectors/submission.py).

A queue whose backend fails sits out `failing_queue_skip_cycles` cycles, with the error kept
and logged each cycle. `stop()` (SIGTERM in `main`) ends the loop after the current cycle;
pilots keep running, and a restarted director picks them up from central (`ListPilots`, with
their backend references); its journal is only a local cache, rebuilt if lost or unreadable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gridpilot.channel import ClientSecurity, FileToken, TokenFileError
from gridpilot.config_files import ConfigError
from gridpilot.logs import get_logger
from sitedirectors.base import BackendConfigError, BackendContext
from sitedirectors.bundle import BundleError, PilotBundle
from sitedirectors.central_client import (
    ACTIVE_PILOT_STATES,
    CentralClient,
    CentralError,
    QueueReport,
)
from sitedirectors.config import DirectorConfig, QueueSection
from sitedirectors.demand import QueueDemandView, QueueLimits, pilots_to_submit
from sitedirectors.journal import Journal, JournalError
from sitedirectors.monitor import QueueRuntime, cleanup_finished, monitor_pilots
from sitedirectors.registry import BackendRegistry, default_registry
from sitedirectors.submission import submit_pilots

log = get_logger(__name__)

JOURNAL_FILE = "journal.json"
# Central's answers that concern one queue, not the director as a whole.
_QUEUE_REFUSALS = frozenset({"INVALID_ARGUMENT", "PERMISSION_DENIED"})
# Granularity of the sleep between cycles, i.e. how fast stop() is noticed.
_STOP_POLL = 0.1


@dataclass
class QueueHealth:
    skip_left: int = 0
    error: str = ""
    # When the current run of failures began (0.0: healthy).
    failing_since: float = 0.0


@dataclass
class CycleReport:
    submitted: dict[str, int] = field(default_factory=dict)
    updated: int = 0
    skipped: list[str] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)
    # Set when central could not be reached; the cycle did nothing then.
    central_error: str = ""

    @property
    def ok(self) -> bool:
        return not self.central_error and not self.failing


def _load_journal(path: Path) -> Journal:
    """The journal only caches what central knows: an unreadable one is set aside (kept for
    a post-mortem) and rebuilt from central's pilot list, instead of stopping the director."""
    try:
        return Journal.load(path)
    except JournalError as exc:
        aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
        try:
            path.rename(aside)
        except OSError as move_error:
            raise JournalError(f"{exc}; and cannot move it aside: {move_error}") from exc
        log.warning("journal.discarded", path=str(path), moved_to=str(aside), error=str(exc))
        return Journal(path)


def queue_limits(queue: QueueSection) -> QueueLimits:
    return QueueLimits(
        max_waiting=queue.max_waiting,
        max_total=queue.max_total,
        max_per_cycle=queue.max_per_cycle,
        ramp_up=queue.ramp_up,
        ramp_up_step=queue.ramp_up_step,
        enabled=queue.enabled,
    )


def director_security(config: DirectorConfig) -> ClientSecurity:
    """TLS towards central and the director's token (ConfigError when unusable)."""
    d = config.director
    try:
        token = FileToken(Path(d.token_file))
    except TokenFileError as exc:
        raise ConfigError(f"director.token_file: {exc}") from exc
    ca = Path(d.ca) if d.ca else None
    if ca is not None and not ca.is_file():
        raise ConfigError(f"director.ca: CA certificate {ca} does not exist")
    return ClientSecurity.from_options(ca=ca, insecure=d.insecure, token=token)


class Director:
    def __init__(
        self,
        config: DirectorConfig,
        *,
        registry: BackendRegistry | None = None,
        client: CentralClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.work_dir = Path(config.director.work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.journal = _load_journal(self.work_dir / JOURNAL_FILE)
        self.queues = self._create_backends(registry or default_registry())
        self.client = client or CentralClient(
            config.director.central,
            config.director.name,
            director_security(config),
            timeout=config.director.rpc_timeout,
        )
        self._clock = clock
        self._health: dict[str, QueueHealth] = {name: QueueHealth() for name in self.queues}
        self._stop_requested = False

    def _load_bundle(self) -> PilotBundle | None:
        path = self.config.director.pilot_bundle
        if not path:
            return None
        try:
            return PilotBundle.load(Path(path))
        except BundleError as exc:
            raise ConfigError(f"director.pilot_bundle: {exc}") from exc

    def _create_backends(self, registry: BackendRegistry) -> dict[str, QueueRuntime]:
        queues: dict[str, QueueRuntime] = {}
        bundle = self._load_bundle()
        for queue in self.config.queues:
            context = BackendContext(
                queue.name,
                self.work_dir,
                queue.backend_options,
                bundle=bundle,
                director=self.config.director.name,
            )
            try:
                backend = registry.create(queue.backend, context)
            except KeyError as exc:
                raise ConfigError(f"queues[{queue.name}].backend: {exc.args[0]}") from exc
            except BackendConfigError as exc:
                raise ConfigError(str(exc)) from exc
            queues[queue.name] = QueueRuntime(queue, backend)
        return queues

    # ---- lifecycle ----

    def stop(self) -> None:
        """Ask the loop to end after the current cycle (safe from a signal handler)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def close(self) -> None:
        for runtime in self.queues.values():
            runtime.backend.close()
        self.client.close()

    def run(self) -> None:
        period = self.config.director.cycle_period
        log.info("director.started", director=self.config.director.name, queues=len(self.queues))
        while not self._stop_requested:
            started = time.monotonic()
            self.run_cycle()
            deadline = started + period
            while not self._stop_requested and time.monotonic() < deadline:
                time.sleep(min(_STOP_POLL, max(0.0, deadline - time.monotonic())))
        log.info("director.stopped", director=self.config.director.name)

    # ---- one cycle ----

    def run_cycle(self) -> CycleReport:
        report = CycleReport()
        started = time.monotonic()
        skip = self._tick_skips(report)
        try:
            # Monitor first: pilots that ended since the last cycle no longer count as
            # waiting when central computes the demand.
            self._monitor(skip, report)
            self._submit_all(skip | frozenset(report.failing), report)
        except CentralError as exc:
            report.central_error = str(exc)
            log.error("central.unreachable", director=self.config.director.name, error=str(exc))
        self._settle_health(skip, report)
        if not report.central_error:
            self._report_queues(report)
        log.info(
            "cycle.done",
            submitted=sum(report.submitted.values()),
            updated=report.updated,
            skipped=len(report.skipped),
            failing=len(report.failing),
            seconds=round(time.monotonic() - started, 3),
        )
        return report

    def _tick_skips(self, report: CycleReport) -> frozenset[str]:
        skip: set[str] = set()
        for name, health in self._health.items():
            if health.skip_left > 0:
                health.skip_left -= 1
                skip.add(name)
                report.skipped.append(name)
                log.warning(
                    "queue.skipped", queue=name, cycles_left=health.skip_left, error=health.error
                )
        return frozenset(skip)

    def _fail(self, queue: str, error: str, report: CycleReport) -> None:
        cycles = self.config.director.failing_queue_skip_cycles
        since = self._health[queue].failing_since or self._clock()
        self._health[queue] = QueueHealth(skip_left=cycles, error=error, failing_since=since)
        report.failing[queue] = error
        log.error("queue.failing", queue=queue, skip_cycles=cycles, error=error)

    def _settle_health(self, skipped: frozenset[str], report: CycleReport) -> None:
        """A queue that was tried this cycle and did not fail is healthy again."""
        if report.central_error:
            return
        for name, health in self._health.items():
            if name not in skipped and name not in report.failing and health.error:
                log.info("queue.recovered", queue=name, error_was=health.error)
                self._health[name] = QueueHealth()

    def queue_reports(self, report: CycleReport) -> list[QueueReport]:
        reports: list[QueueReport] = []
        for name, runtime in self.queues.items():
            health = self._health[name]
            state = "ok"
            if not runtime.config.enabled:
                state = "disabled"
            elif health.error:
                state = "failing"
            reports.append(
                QueueReport(
                    queue=runtime.config,
                    backend=runtime.config.backend,
                    health=state,
                    error=health.error,
                    skip_cycles_left=health.skip_left,
                    failing_since=health.failing_since,
                    submitted=report.submitted.get(name, 0),
                )
            )
        return reports

    def _report_queues(self, report: CycleReport) -> None:
        # Best effort: the operators' view must not stop pilot submission.
        try:
            self.client.report_queues(self.queue_reports(report))
        except CentralError as exc:
            log.warning("queues.report_failed", error=str(exc))

    def _submit_all(self, skip: frozenset[str], report: CycleReport) -> None:
        candidates = [
            r.config for r in self.queues.values() if r.config.enabled and r.config.name not in skip
        ]
        if not candidates:
            return
        demands = self._get_demand(candidates, report)
        for queue in candidates:
            demand = demands.get(queue.name)
            if demand is None:
                log.warning("queue.no_demand", queue=queue.name, reason="central did not answer")
                continue
            decision = pilots_to_submit(demand, queue_limits(queue))
            log.debug(
                "queue.demand",
                queue=queue.name,
                eligible=demand.eligible_jobs,
                waiting=demand.pilots_waiting,
                running=demand.pilots_running,
                idle=demand.pilots_idle,
                to_submit=decision.count,
                limited_by=decision.limited_by,
            )
            if decision.count > 0:
                self._submit(queue, decision.count, report)

    def _get_demand(
        self, queues: list[QueueSection], report: CycleReport
    ) -> dict[str, QueueDemandView]:
        try:
            return self.client.get_demand(queues)
        except CentralError as exc:
            if exc.code not in _QUEUE_REFUSALS:
                raise
        # Central refused one queue (an unknown site, or a site this director's token does
        # not cover): find which, so only that queue sits out.
        demands: dict[str, QueueDemandView] = {}
        for queue in queues:
            try:
                demands.update(self.client.get_demand([queue]))
            except CentralError as exc:
                if exc.code not in _QUEUE_REFUSALS:
                    raise
                self._fail(queue.name, str(exc), report)
        return demands

    def _submit(self, queue: QueueSection, count: int, report: CycleReport) -> None:
        try:
            result = submit_pilots(
                queue=queue,
                backend=self.queues[queue.name].backend,
                count=count,
                client=self.client,
                journal=self.journal,
                central=self.config.director.central,
                now=self._clock(),
                ca=Path(self.config.director.ca).resolve() if self.config.director.ca else None,
                insecure=self.config.director.insecure,
            )
        except CentralError:
            raise
        except Exception as exc:
            # A broken backend fails its queue, not the director.
            self._fail(queue.name, f"submit: {type(exc).__name__}: {exc}", report)
            return
        report.submitted[queue.name] = result.submitted
        if result.errors:
            self._fail(queue.name, f"submit: {result.errors[0]}", report)

    def _monitor(self, skip: frozenset[str], report: CycleReport) -> None:
        now = self._clock()
        active = self.client.list_pilots(ACTIVE_PILOT_STATES)
        result = monitor_pilots(
            queues=self.queues,
            active=active,
            client=self.client,
            journal=self.journal,
            now=now,
            log_cap_bytes=self.config.director.log_cap_bytes,
            skip=skip,
        )
        report.updated = result.updated
        for queue, error in result.errors.items():
            self._fail(queue, error, report)
        cleanup_finished(
            queues=self.queues,
            journal=self.journal,
            now=now,
            cleanup_after=self.config.director.cleanup_after,
        )
