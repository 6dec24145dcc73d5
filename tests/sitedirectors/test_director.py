"""The director loop against a real central (subprocess) with real local pilot processes.

The pilots here are stand-ins (a sleeping or exiting Python) so that the director's own
decisions are what is tested; tests/sitedirectors/test_e2e.py runs the real pilot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from gridpilot.v1 import common_pb2, sitedirectors_pb2
from sitedirectors.base import (
    BackendContext,
    BackendError,
    BackendStatus,
    LivePilot,
    SubmitRequest,
    SubmitResult,
)
from sitedirectors.central_client import CentralClient
from sitedirectors.director import Director, director_security
from sitedirectors.local import LocalBackend
from sitedirectors.monitor import NO_REFERENCE_REASON
from sitedirectors.registry import BackendRegistry
from tests.sitedirectors.helpers import (
    director_config,
    director_token_file,
    exiting_command,
    kill_pilots,
    list_pilots,
    pilot_pids,
    submit_jobs,
)
from tests.support.central_process import CE, QUEUE, SITE, CentralHandle, running_central

PS = common_pb2.PilotState


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralHandle]:
    with running_central(tmp_path / "central") as handle:
        yield handle


@pytest.fixture
def pilots_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "director" / "pilots"
    yield path
    kill_pilots(path)


def states(central: CentralHandle) -> dict[str, int]:
    return {p.pilot_id: p.state for p in list_pilots(central)}


def cycle_until(
    director: Director, done: Callable[[], bool], timeout: float = 15.0, pause: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        director.run_cycle()
        time.sleep(pause)


def test_never_more_pilots_than_eligible_jobs(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 3)
    director = Director(director_config(tmp_path, central, max_per_cycle=50))
    try:
        for _ in range(4):
            assert director.run_cycle().ok
    finally:
        director.close()
    pilots = list_pilots(central)
    assert len(pilots) == 3
    for p in pilots:
        assert (p.site, p.ce, p.queue) == (SITE, CE, QUEUE)
        assert (p.backend, p.director) == ("local", "test-director")
        # Started, not registered: Waiting (counts against demand), never Running.
        assert p.state == PS.PILOT_STATE_WAITING
        assert len(p.pilot_id) == 32
        # Central has the backend's reference, the same the journal caches.
        assert p.reference.endswith(f":{p.pilot_id}")
        entry = director.journal.get(p.pilot_id)
        assert entry is not None
        assert entry.reference == p.reference
    assert len([pid for pid in pilot_pids(pilots_dir) if psutil.pid_exists(pid)]) == 3


def test_no_jobs_no_pilots(tmp_path: Path, central: CentralHandle, pilots_dir: Path) -> None:
    director = Director(director_config(tmp_path, central))
    try:
        report = director.run_cycle()
    finally:
        director.close()
    assert report.ok
    assert report.submitted == {}
    assert list_pilots(central) == []


def test_max_per_cycle_and_max_waiting(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 20)
    director = Director(
        director_config(tmp_path, central, max_per_cycle=3, max_waiting=5, max_total=10)
    )
    try:
        assert director.run_cycle().submitted == {QUEUE: 3}
        assert director.run_cycle().submitted == {QUEUE: 2}  # max_waiting reached
        assert director.run_cycle().submitted == {}
    finally:
        director.close()
    assert len(list_pilots(central)) == 5


def test_failed_pilots_reported_with_log_tail_after_restart(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 2)
    pilot = {"command": exiting_command(3, "no CVMFS here " + "x" * 500)}
    first = Director(director_config(tmp_path, central, pilot=pilot))
    try:
        assert first.run_cycle().submitted == {QUEUE: 2}
    finally:
        first.close()
    # The operator disables the queue and restarts the director: it still tracks its pilots.
    cfg = director_config(tmp_path, central, pilot=pilot, enabled=False)
    cfg.director.log_cap_bytes = 100
    second = Director(cfg)
    try:
        cycle_until(second, lambda: set(states(central).values()) == {PS.PILOT_STATE_FAILED})
    finally:
        second.close()
    for p in list_pilots(central):
        assert p.status_reason == "pilot exited with code 3"
        assert "x" in p.log_tail
        assert len(p.log_tail.encode()) <= 100


def test_restart_without_journal_takes_references_from_central(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 2)
    pilot = {"command": exiting_command(3, "no CVMFS here")}
    first = Director(director_config(tmp_path, central, pilot=pilot))
    try:
        assert first.run_cycle().submitted == {QUEUE: 2}
    finally:
        first.close()
    references = {p.pilot_id: p.reference for p in list_pilots(central)}
    assert all(references.values())
    # The director's disk is lost; central still knows the pilots and their references.
    journal = tmp_path / "director" / "journal.json"
    journal.unlink()
    cfg = director_config(tmp_path, central, pilot=pilot, enabled=False)
    cfg.director.cleanup_after = 0.5
    second = Director(cfg)
    try:
        assert second.journal.entries() == []
        cycle_until(second, lambda: set(states(central).values()) == {PS.PILOT_STATE_FAILED})
        # The cache was rebuilt from central, so the finished pilots are cleaned up too.
        assert {e.pilot_id: e.reference for e in second.journal.entries()} == references
        cycle_until(second, lambda: not any(pilots_dir.iterdir()))
        assert second.journal.entries() == []
    finally:
        second.close()
    for p in list_pilots(central):
        assert p.status_reason == "pilot exited with code 3"
        assert "no CVMFS here" in p.log_tail


def test_unreadable_journal_is_set_aside(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    journal = tmp_path / "director" / "journal.json"
    journal.parent.mkdir(parents=True)
    journal.write_text("{not json")
    director = Director(director_config(tmp_path, central))
    try:
        assert director.journal.entries() == []
        assert director.run_cycle().ok
    finally:
        director.close()
    [aside] = journal.parent.glob("journal.json.unreadable-*")
    assert aside.read_text() == "{not json"


class CentralGoesAwayCE(LocalBackend):
    """Submits like `local`; central stops right after, before it hears the references."""

    name = "central-goes-away"
    central: CentralHandle

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        results = super().submit(request)
        self.central.stop()
        return results


def test_reference_central_missed_is_sent_next_cycle(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 1)

    def factory(context: BackendContext) -> CentralGoesAwayCE:
        backend = CentralGoesAwayCE(context.work_dir / "pilots", kill_grace=1.0)
        backend.central = central
        return backend

    registry = BackendRegistry()
    registry.register("central-goes-away", factory)
    cfg = director_config(tmp_path, central, backend="central-goes-away", enabled=False)
    cfg.director.rpc_timeout = 1.0
    director = Director(cfg, registry=registry)
    try:
        cfg.queues[0].enabled = True
        report = director.run_cycle()
        assert "UpdatePilots" in report.central_error
        [entry] = director.journal.entries()
        assert entry.reference
        central.start()
        cfg.queues[0].enabled = False
        # The director's client waits for its channel to reconnect (wait_for_ready).
        director.client.timeout = 10.0
        [known] = director.client.list_pilots()
        assert (known.pilot_id, known.reference) == (entry.pilot_id, "")
        assert director.run_cycle().ok
    finally:
        director.close()
    [recorded] = list_pilots(central)
    assert recorded.reference == entry.reference
    assert recorded.state == PS.PILOT_STATE_WAITING


def test_done_pilots_and_cleanup(tmp_path: Path, central: CentralHandle, pilots_dir: Path) -> None:
    submit_jobs(central, 2)
    cfg = director_config(
        tmp_path, central, pilot={"command": exiting_command(0, "pilot ended well")}
    )
    cfg.director.cleanup_after = 0.5
    director = Director(cfg)
    try:
        director.run_cycle()
        cfg.queues[0].enabled = False
        cycle_until(director, lambda: set(states(central).values()) == {PS.PILOT_STATE_DONE})
        assert len(list(pilots_dir.iterdir())) == 2
        cycle_until(director, lambda: not any(pilots_dir.iterdir()))
        assert director.journal.entries() == []
    finally:
        director.close()
    # Done pilots' logs are kept too: the operator sees what a pilot did, not only failures.
    assert [p.log_tail for p in list_pilots(central)] == ["pilot ended well\n"] * 2


def test_failing_queue_is_skipped_then_retried(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 2)
    cfg = director_config(tmp_path, central, max_per_cycle=1)
    cfg.queues[0].backend_options["shell"] = str(tmp_path / "no-such-shell")
    director = Director(cfg)
    try:
        first = director.run_cycle()
        assert QUEUE in first.failing
        assert "no-such-shell" in first.failing[QUEUE]
        for _ in range(2):  # failing_queue_skip_cycles = 2
            report = director.run_cycle()
            assert report.skipped == [QUEUE]
            assert report.submitted == {}
        again = director.run_cycle()
        assert QUEUE in again.failing
        [reported] = director.queue_reports(again)
        assert (reported.health, reported.skip_cycles_left) == ("failing", 2)
        first_failure = reported.failing_since
        # The admin mends the setting: once its skip is over the queue is healthy again.
        backend = director.queues[QUEUE].backend
        assert isinstance(backend, LocalBackend)
        backend.shell = "/bin/sh"
        for _ in range(2):
            director.run_cycle()
        [still_failing] = director.queue_reports(again)
        assert still_failing.failing_since == first_failure
        recovered = director.run_cycle()
        assert recovered.failing == {}
        assert recovered.submitted == {QUEUE: 1}
        [healthy] = director.queue_reports(recovered)
        assert (healthy.health, healthy.error, healthy.failing_since) == ("ok", "", 0.0)
    finally:
        director.close()
    pilots = [p for p in list_pilots(central) if p.state == PS.PILOT_STATE_ABORTED]
    assert len(pilots) == 2  # one per attempt, none while skipped
    for p in pilots:
        assert p.state == PS.PILOT_STATE_ABORTED
        assert p.status_reason.startswith("submission failed: ")


def test_queue_unknown_to_central_fails_alone(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 2)
    data = director_config(tmp_path, central)
    bad = director_config(tmp_path, central, name="elsewhere", site="NO.SUCH.site")
    data.queues.extend(bad.queues)
    director = Director(data)
    try:
        report = director.run_cycle()
    finally:
        director.close()
    assert report.submitted == {QUEUE: 2}
    assert "NO.SUCH.site" in report.failing["elsewhere"]


def test_queue_outside_the_directors_token_fails_alone(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 2)
    data = director_config(tmp_path, central)
    other = director_config(tmp_path / "other", central, name="elsewhere", site="LCG.OTHER.xx")
    data.queues.extend(other.queues)
    # The token names SITE only (config_dict wrote it last for SITE alone).
    director_token_file(tmp_path, central, [SITE])
    director = Director(data)
    try:
        report = director.run_cycle()
    finally:
        director.close()
    assert report.submitted == {QUEUE: 2}
    assert "PERMISSION_DENIED" in report.failing["elsewhere"]
    assert "LCG.OTHER.xx" in report.failing["elsewhere"]


def test_central_down_then_back(tmp_path: Path, central: CentralHandle, pilots_dir: Path) -> None:
    submit_jobs(central, 1)
    cfg = director_config(tmp_path, central)
    cfg.director.rpc_timeout = 1.0
    director = Director(cfg)
    try:
        central.stop()
        report = director.run_cycle()
        assert report.central_error
        assert not report.ok
        assert director.journal.entries() == []
        central.start()
        # Long enough for the channel's reconnect back-off: the call waits for it.
        director.client.timeout = 10.0
        report = director.run_cycle()
        assert report.ok, report.central_error
        assert report.submitted == {QUEUE: 1}
    finally:
        director.close()


def test_pilot_without_reference_becomes_unknown(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    cfg = director_config(tmp_path, central)
    # A pilot recorded before a crash that lost the submission (no journal entry, no reference).
    client = CentralClient(central.target, cfg.director.name, director_security(cfg))
    try:
        client._stub.RecordPilots(
            sitedirectors_pb2.RecordPilotsRequest(
                pilots=[
                    sitedirectors_pb2.PilotRecord(
                        pilot_id="lost", site=SITE, ce=CE, queue=QUEUE, director="test-director"
                    )
                ]
            )
        )
    finally:
        client.close()
    director = Director(cfg)
    try:
        director.run_cycle()
    finally:
        director.close()
    [pilot] = list_pilots(central)
    assert pilot.state == PS.PILOT_STATE_UNKNOWN
    assert pilot.status_reason == NO_REFERENCE_REASON


class UnreachableCE(LocalBackend):
    """Starts pilots like `local`, then loses contact with them (a CE that went away)."""

    name = "unreachable-ce"
    reachable = True

    def status(self, references: Sequence[str]) -> dict[str, BackendStatus]:
        if not self.reachable:
            raise BackendError(self.name, "status", "connection refused")
        return super().status(references)


def test_status_failure_fails_the_queue(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 1)
    backends: list[UnreachableCE] = []

    def factory(context: BackendContext) -> UnreachableCE:
        backends.append(UnreachableCE(context.work_dir / "pilots", kill_grace=1.0))
        return backends[-1]

    registry = BackendRegistry()
    registry.register("unreachable-ce", factory)
    director = Director(
        director_config(tmp_path, central, backend="unreachable-ce"), registry=registry
    )
    try:
        assert director.run_cycle().submitted == {QUEUE: 1}
        submit_jobs(central, 1)
        backends[0].reachable = False
        report = director.run_cycle()
        assert "connection refused" in report.failing[QUEUE]
        assert report.submitted == {}  # no submission to a queue that just failed
        assert director.run_cycle().skipped == [QUEUE]
    finally:
        director.close()
    [pilot] = list_pilots(central)
    assert pilot.backend == "unreachable-ce"


class BusyCE(LocalBackend):
    """A CE that refuses submissions for now ("try again later")."""

    name = "busy-ce"

    def submit(self, request: SubmitRequest) -> list[SubmitResult]:
        return [SubmitResult.retry(p.pilot_id, "CE busy: 503") for p in request.pilots]


def test_deferred_submission_does_not_fail_the_queue(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 2)
    registry = BackendRegistry()
    registry.register("busy-ce", lambda ctx: BusyCE(ctx.work_dir / "pilots"))
    director = Director(director_config(tmp_path, central, backend="busy-ce"), registry=registry)
    try:
        first = director.run_cycle()
        assert first.ok
        assert first.submitted == {QUEUE: 0}
        second = director.run_cycle()
        assert second.skipped == []  # tried again at once
        assert director.journal.entries() == []
    finally:
        director.close()
    pilots = list_pilots(central)
    assert len(pilots) == 4
    assert {p.state for p in pilots} == {PS.PILOT_STATE_ABORTED}
    assert {p.status_reason for p in pilots} == {"submission deferred: CE busy: 503"}


class WatchingCE(LocalBackend):
    """Remembers what central said of its live pilots each cycle (as a VM factory would)."""

    name = "watching-ce"

    def __init__(self, pilots_dir: Path) -> None:
        super().__init__(pilots_dir)
        self.seen: list[tuple[list[LivePilot], float]] = []

    def reconcile(self, live: Sequence[LivePilot], now: float) -> None:
        self.seen.append((list(live), now))


def test_backends_hear_which_pilots_central_counts_as_live(
    tmp_path: Path, central: CentralHandle, pilots_dir: Path
) -> None:
    submit_jobs(central, 1)
    backend = WatchingCE(pilots_dir)
    registry = BackendRegistry()
    registry.register("watching-ce", lambda ctx: backend)
    director = Director(
        director_config(tmp_path, central, backend="watching-ce", max_per_cycle=1),
        registry=registry,
    )
    try:
        director.run_cycle()  # submits
        director.run_cycle()  # monitors, then reconciles
    finally:
        director.close()
    [pilot] = list_pilots(central)
    live, now = backend.seen[-1]
    assert [(p.pilot_id, p.reference) for p in live] == [(pilot.pilot_id, pilot.reference)]
    assert live[0].submitted == pytest.approx(pilot.submitted_unix)
    assert live[0].registered == 0.0  # a stand-in pilot never registers
    assert now >= live[0].submitted
    # The first cycle's reconcile came before any pilot existed: an empty list, still called.
    assert backend.seen[0][0] == []
