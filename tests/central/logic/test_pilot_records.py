from __future__ import annotations

from pathlib import Path

import pytest

from central.logic.pilot_records import abort_lost_pilots, pilot_state_allowed, record_pilots
from central.models.pilot_states import PilotState
from central.store.records import PilotRecord, PilotUpdate
from tests.central.logic.helpers import world
from tests.support.central_process import SITE
from tests.support.inprocess import run

P = PilotState


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (P.SUBMITTED, P.WAITING, True),
        (P.SUBMITTED, P.RUNNING, True),
        (P.WAITING, P.SUBMITTED, False),
        (P.RUNNING, P.WAITING, False),
        (P.RUNNING, P.DONE, True),
        (P.SUBMITTED, P.FAILED, True),
        (P.DONE, P.RUNNING, False),
        (P.FAILED, P.DONE, False),
        (P.ABORTED, P.UNKNOWN, False),
        (P.RUNNING, P.UNKNOWN, True),
        (P.UNKNOWN, P.RUNNING, True),
        (P.UNKNOWN, P.SUBMITTED, True),
        (P.RUNNING, P.RUNNING, True),
    ],
)
def test_never_backwards(old: PilotState, new: PilotState, allowed: bool) -> None:
    assert pilot_state_allowed(old, new) is allowed


def test_unknown_for_an_hour_is_aborted(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            now = w.clock()
            await record_pilots(
                w.store,
                [
                    PilotRecord(
                        pilot_id=f"p{i}",
                        reference="",
                        site=SITE,
                        ce="ce",
                        queue="q",
                        backend="local",
                        director="d",
                        state=P.SUBMITTED,
                        submitted=now,
                    )
                    for i in range(2)
                ],
                now,
            )
            await w.store.update_pilots([PilotUpdate(pilot_id="p0", time=now, state=P.UNKNOWN)])
            await w.store.update_pilots(
                [PilotUpdate(pilot_id="p1", time=now + 3000, state=P.UNKNOWN)]
            )
            assert await abort_lost_pilots(w.store, now + 3599) == 0
            assert await abort_lost_pilots(w.store, now + 3601) == 1
            p0 = await w.store.get_pilot("p0")
            p1 = await w.store.get_pilot("p1")
            assert p0 is not None
            assert p1 is not None
            assert p0.state == P.ABORTED
            assert p1.state == P.UNKNOWN

    run(body())
