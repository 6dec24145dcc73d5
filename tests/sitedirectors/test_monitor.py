"""Which backend states are sent to central: forward only, as central's own rule."""

from __future__ import annotations

import pytest

from central.models.pilot_states import PilotState
from sitedirectors.base import BackendStatus
from sitedirectors.monitor import as_reported, needs_update

P = PilotState


@pytest.mark.parametrize(
    ("central", "backend", "expected"),
    [
        (P.SUBMITTED, P.SUBMITTED, False),
        (P.SUBMITTED, P.WAITING, True),
        (P.SUBMITTED, P.RUNNING, True),
        (P.WAITING, P.RUNNING, True),
        (P.RUNNING, P.WAITING, False),  # central registered it; the CE lags behind
        (P.RUNNING, P.SUBMITTED, False),
        (P.RUNNING, P.RUNNING, False),
        (P.RUNNING, P.DONE, True),
        (P.SUBMITTED, P.FAILED, True),
        (P.WAITING, P.ABORTED, True),
        (P.RUNNING, P.UNKNOWN, True),
        (P.UNKNOWN, P.UNKNOWN, False),
        (P.UNKNOWN, P.RUNNING, True),  # recovered
        (P.UNKNOWN, P.SUBMITTED, True),
    ],
)
def test_needs_update(central: PilotState, backend: PilotState, expected: bool) -> None:
    assert needs_update(central, backend) is expected


def test_running_backend_pilot_is_waiting_until_it_registers() -> None:
    running = BackendStatus(P.RUNNING, "running")
    assert as_reported(running).state is P.WAITING
    assert as_reported(running).native == "running"
    failed = BackendStatus(P.FAILED, "failed", exit_code=3, reason="exit 3")
    assert as_reported(failed) == failed
    # Registered pilots are not pulled back to Waiting.
    assert not needs_update(P.RUNNING, as_reported(running).state)
