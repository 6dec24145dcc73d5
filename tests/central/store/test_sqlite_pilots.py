"""SqliteStore pilot records."""

from __future__ import annotations

from typing import Any

from central.models.pilot_states import PilotState
from central.store.records import PilotFilter, PilotRecord, PilotUpdate
from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner

P = PilotState


def _pilot(pilot_id: str, **kw: Any) -> PilotRecord:
    fields: dict[str, Any] = {
        "pilot_id": pilot_id,
        "reference": f"htcondor://ce/{pilot_id}",
        "site": "LCG.KEK.jp",
        "ce": "ce01.kek.jp",
        "queue": "long",
        "backend": "htcondorce",
        "director": "sd-1",
        "state": P.SUBMITTED,
        "submitted": 100.0,
    }
    fields.update(kw)
    return PilotRecord(**fields)


def test_insert_and_get_round_trip_existing_left_alone(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        full = _pilot(
            "p1",
            registered=101.0,
            last_heartbeat=102.0,
            jobs_run=3,
            status_reason="why",
            log_tail="tail",
            idle_since=103.0,
            state_changed=104.0,
        )
        await store.insert_pilots([full, _pilot("p2")])
        assert await store.get_pilot("p1") == full
        # Without a state-change time the pilot entered its state when submitted.
        p2 = await store.get_pilot("p2")
        assert p2 is not None
        assert p2.state_changed == 100.0
        await store.insert_pilots([_pilot("p1", site="ELSEWHERE", state=P.FAILED)])
        assert await store.get_pilot("p1") == full
        assert await store.get_pilot("nope") is None
        await store.insert_pilots([])

    with_store(body)


def test_update_pilots_sets_given_fields_and_state_changed(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.insert_pilots([_pilot("p1")])
        await store.update_pilots(
            [PilotUpdate(pilot_id="p1", time=110.0, state=P.RUNNING, registered=110.0, idle=True)]
        )
        p = await store.get_pilot("p1")
        assert p is not None
        assert (p.state, p.state_changed, p.registered, p.idle_since) == (
            P.RUNNING,
            110.0,
            110.0,
            110.0,
        )
        # Same state again: state_changed stays; idle None keeps idle_since.
        await store.update_pilots(
            [PilotUpdate(pilot_id="p1", time=120.0, state=P.RUNNING, last_heartbeat=120.0)]
        )
        p = await store.get_pilot("p1")
        assert p is not None
        assert (p.state_changed, p.last_heartbeat, p.idle_since) == (110.0, 120.0, 110.0)
        await store.update_pilots(
            [
                PilotUpdate(pilot_id="p1", time=130.0, jobs_run=2, idle=False),
                PilotUpdate(pilot_id="ghost", time=130.0, state=P.DONE),
                PilotUpdate(
                    pilot_id="p1",
                    time=140.0,
                    state=P.DONE,
                    status_reason="exit 0",
                    log_tail="bye",
                ),
            ]
        )
        p = await store.get_pilot("p1")
        assert p is not None
        assert (p.jobs_run, p.idle_since, p.state, p.state_changed) == (2, None, P.DONE, 140.0)
        assert (p.status_reason, p.log_tail, p.registered) == ("exit 0", "bye", 110.0)
        assert await store.get_pilot("ghost") is None
        # An update with nothing to change is harmless.
        await store.update_pilots([PilotUpdate(pilot_id="p1", time=150.0)])
        assert await store.get_pilot("p1") == p

    with_store(body)


def test_list_pilots_filters_orders_and_limits(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        await store.insert_pilots(
            [
                _pilot("c", submitted=3.0, queue="short"),
                _pilot("a", submitted=1.0),
                _pilot("b", submitted=2.0, site="DESY", director="sd-2", state=P.RUNNING),
                _pilot("d", submitted=2.0, state=P.WAITING),
            ]
        )

        async def ids(where: PilotFilter) -> list[str]:
            return [p.pilot_id for p in await store.list_pilots(where)]

        assert await ids(PilotFilter()) == ["a", "b", "d", "c"]
        assert await ids(PilotFilter(site="LCG.KEK.jp")) == ["a", "d", "c"]
        assert await ids(PilotFilter(queue="short")) == ["c"]
        assert await ids(PilotFilter(director="sd-2")) == ["b"]
        assert await ids(PilotFilter(states=(P.RUNNING, P.WAITING))) == ["b", "d"]
        assert await ids(PilotFilter(site="LCG.KEK.jp", queue="long", limit=1)) == ["a"]
        assert await ids(PilotFilter(states=(P.ABORTED,))) == []

    with_store(body)


def test_update_pilots_reference_set_and_none_keeps(with_store: StoreRunner) -> None:
    async def body(store: SqliteStore) -> None:
        # Directors record a pilot before the backend has named it.
        await store.insert_pilots([_pilot("p1", reference="")])
        await store.update_pilots([PilotUpdate(pilot_id="p1", time=110.0, reference="4242.0")])
        p = await store.get_pilot("p1")
        assert p is not None
        assert p.reference == "4242.0"
        await store.update_pilots(
            [PilotUpdate(pilot_id="p1", time=120.0, state=P.RUNNING, status_reason="up")]
        )
        p = await store.get_pilot("p1")
        assert p is not None
        assert (p.reference, p.state, p.status_reason) == ("4242.0", P.RUNNING, "up")

    with_store(body)
