"""The conformance suite every site-director backend runs against real pilots-to-be.

A backend's test module subclasses `BackendConformance` and provides three fixtures:

- `backend`: a ready backend instance;
- `restarted_backend`: a factory for a *new* instance over the same state (a director restart);
- `launch_factory`: builds a `PilotLaunch` running a tiny Python program on the backend's
  worker (instead of the real pilot), so states and exit codes are under the test's control.

Plus `vanish(reference)`: make the pilot disappear the way a batch system or an OOM killer
would, without the backend's knowledge.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from central.models.pilot_states import FINAL_PILOT_STATES, PilotState
from sitedirectors.base import (
    Backend,
    BackendStatus,
    PilotLaunch,
    PilotQueue,
    SubmitOutcome,
    SubmitRequest,
)

LaunchFactory = Callable[[str, str], PilotLaunch]

QUEUE = PilotQueue(
    name="test-queue", site="LCG.TEST.xx", ce="ce.test", slots=1, memory_mb=500, cpu_time=3600
)


def wait_status(
    backend: Backend,
    reference: str,
    until: Callable[[BackendStatus], bool],
    timeout: float = 15.0,
) -> BackendStatus:
    deadline = time.monotonic() + timeout
    status = backend.status([reference])[reference]
    while not until(status):
        if time.monotonic() > deadline:
            raise AssertionError(f"pilot {reference} still {status} after {timeout}s")
        time.sleep(0.05)
        status = backend.status([reference])[reference]
    return status


def is_final(status: BackendStatus) -> bool:
    return status.state in FINAL_PILOT_STATES


def is_running(status: BackendStatus) -> bool:
    return status.state is PilotState.RUNNING


def submit(backend: Backend, *launches: PilotLaunch) -> list[str]:
    """Submit `launches` in one request; every one must be accepted. Their references."""
    results = backend.submit(SubmitRequest(QUEUE, launches))
    assert [r.outcome for r in results] == [SubmitOutcome.OK] * len(launches), results
    return [r.reference for r in results]


# A pilot stand-in that prints, as JSON, what a pilot would find of its credentials: its
# arguments, the token file's and its directory's modes, the token, the CA file, its
# environment and its own command line (where a leaked token would show).
TOKEN_PROBE = (
    "import json, os, sys; a = sys.argv[1:]; path = a[a.index('--token-file') + 1]; "
    "print(json.dumps({'argv': a, 'mode': os.stat(path).st_mode & 0o777, "
    "'dir_mode': os.stat(os.path.dirname(path)).st_mode & 0o777, "
    "'token': open(path).read().strip(), 'environ': dict(os.environ), "
    "'ca': open(a[a.index('--ca') + 1]).read(), "
    "'cmdline': open('/proc/self/cmdline', 'rb').read().decode()}))"
)


class BackendConformance:
    def vanish(self, reference: str) -> None:
        raise NotImplementedError

    def submit_one(self, backend: Backend, launch_factory: LaunchFactory, code: str) -> str:
        launch = launch_factory(uuid.uuid4().hex, code)
        [result] = backend.submit(SubmitRequest(QUEUE, (launch,)))
        assert result.outcome is SubmitOutcome.OK, result.error
        assert result.pilot_id == launch.pilot_id
        assert result.reference
        return result.reference

    def test_results_follow_request_order(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        launches = tuple(launch_factory(uuid.uuid4().hex, "pass") for _ in range(3))
        results = backend.submit(SubmitRequest(QUEUE, launches))
        assert [r.pilot_id for r in results] == [launch.pilot_id for launch in launches]
        assert all(r.outcome is SubmitOutcome.OK for r in results)
        assert len({r.reference for r in results}) == 3
        for r in results:
            wait_status(backend, r.reference, is_final)

    def test_running_then_done(self, backend: Backend, launch_factory: LaunchFactory) -> None:
        ref = self.submit_one(
            backend, launch_factory, "import time; time.sleep(1.5); print('pilot says hello')"
        )
        running = backend.status([ref])[ref]
        assert running.state is PilotState.RUNNING, running
        done = wait_status(backend, ref, is_final)
        assert done.state is PilotState.DONE, done
        assert done.exit_code == 0
        assert "pilot says hello" in backend.fetch_output(ref)

    def test_nonzero_exit_is_failed(self, backend: Backend, launch_factory: LaunchFactory) -> None:
        ref = self.submit_one(
            backend, launch_factory, "import sys; print('giving up'); sys.exit(3)"
        )
        failed = wait_status(backend, ref, is_final)
        assert failed.state is PilotState.FAILED, failed
        assert failed.exit_code == 3
        assert "3" in failed.reason
        assert "giving up" in backend.fetch_output(ref)

    def test_cancel_aborts(self, backend: Backend, launch_factory: LaunchFactory) -> None:
        ref = self.submit_one(backend, launch_factory, "import time; time.sleep(60)")
        wait_status(backend, ref, lambda s: s.state is PilotState.RUNNING)
        backend.cancel([ref])
        cancelled = wait_status(backend, ref, is_final, timeout=5.0)
        assert cancelled.state is PilotState.ABORTED, cancelled
        assert "cancel" in cancelled.reason

    def test_cancel_of_finished_pilot_is_harmless(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "pass")
        wait_status(backend, ref, is_final)
        backend.cancel([ref])
        assert backend.status([ref])[ref].state is PilotState.DONE

    def test_vanished_pilot_is_aborted(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "import time; time.sleep(60)")
        wait_status(backend, ref, lambda s: s.state is PilotState.RUNNING)
        self.vanish(ref)
        gone = wait_status(backend, ref, is_final, timeout=5.0)
        assert gone.state is PilotState.ABORTED, gone
        assert "vanished" in gone.reason

    def test_state_survives_restart(
        self,
        backend: Backend,
        restarted_backend: Callable[[], Backend],
        launch_factory: LaunchFactory,
    ) -> None:
        done_ref = self.submit_one(backend, launch_factory, "import sys; sys.exit(0)")
        failed_ref = self.submit_one(backend, launch_factory, "import sys; sys.exit(5)")
        running_ref = self.submit_one(backend, launch_factory, "import time; time.sleep(60)")
        wait_status(backend, done_ref, is_final)
        wait_status(backend, failed_ref, is_final)
        backend.close()
        fresh = restarted_backend()
        states = fresh.status([done_ref, failed_ref, running_ref])
        assert states[done_ref].state is PilotState.DONE
        assert states[failed_ref].state is PilotState.FAILED
        assert states[failed_ref].exit_code == 5
        assert states[running_ref].state is PilotState.RUNNING
        fresh.cancel([running_ref])
        assert wait_status(fresh, running_ref, is_final).state is PilotState.ABORTED

    def test_output_is_capped(self, backend: Backend, launch_factory: LaunchFactory) -> None:
        ref = self.submit_one(
            backend, launch_factory, "for i in range(2000): print(f'line {i:05d}')"
        )
        wait_status(backend, ref, is_final)
        tail = backend.fetch_output(ref, max_bytes=200)
        assert len(tail.encode()) <= 200
        assert tail.endswith("line 01999\n")

    def test_unknown_reference(self, backend: Backend) -> None:
        ref = "not-a-reference"
        assert backend.status([ref])[ref].state is PilotState.UNKNOWN

    def test_cleanup_forgets_finished_pilots(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "pass")
        wait_status(backend, ref, is_final)
        backend.cleanup([ref])
        assert backend.status([ref])[ref].state is PilotState.UNKNOWN

    def test_cleanup_keeps_running_pilots(
        self, backend: Backend, launch_factory: LaunchFactory
    ) -> None:
        ref = self.submit_one(backend, launch_factory, "import time; time.sleep(60)")
        wait_status(backend, ref, lambda s: s.state is PilotState.RUNNING)
        backend.cleanup([ref])
        assert backend.status([ref])[ref].state is PilotState.RUNNING
        backend.cancel([ref])
        wait_status(backend, ref, is_final)
