"""Directors' queue reports: stored per (director, queue), scoped to the director's sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.logic.errors import InvalidArgumentError, PermissionDeniedError
from central.logic.identity import Caller
from central.logic.queue_reports import MAX_QUEUES_PER_REPORT, list_queues, report_queues
from central.store.records import QueueStatusRecord
from gridpilot.security.claims import Role
from tests.central.logic.helpers import world
from tests.support.inprocess import run

SITE = "LCG.KEK.jp"
OTHER = "LCG.DESY.de"
DIRECTOR = Caller(subject="kek-director", role=Role.SITE_DIRECTOR, sites=(SITE,))
ADMIN = Caller(subject="ops", role=Role.ADMIN)


def status(queue: str, health: str = "ok", site: str = SITE, **fields: object) -> QueueStatusRecord:
    values: dict[str, object] = {"director": "", "ce": "ce01", "backend": "slurm", **fields}
    return QueueStatusRecord(queue=queue, site=site, health=health, **values)  # type: ignore[arg-type]


def test_latest_report_replaces_the_previous_and_names_the_token_holder(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            forged = status("q1", director="someone-else")  # ignored: the token decides
            await report_queues(w.store, DIRECTOR, [forged, status("q2")], 100.0)
            failing = status(
                "q1", "failing", error="sbatch: invalid partition", skip_cycles_left=3,
                failing_since=99.0,
            )  # fmt: skip
            await report_queues(w.store, DIRECTOR, [failing], 200.0)
            rows = {q.queue: q for q in await list_queues(w.store, ADMIN, "", "")}
            assert set(rows) == {"q1", "q2"}
            assert rows["q1"].director == "kek-director"
            assert rows["q1"].health == "failing"
            assert rows["q1"].error == "sbatch: invalid partition"
            assert rows["q1"].skip_cycles_left == 3
            assert rows["q1"].reported == 200.0
            assert rows["q2"].reported == 100.0

    run(body())


def test_a_director_reports_and_sees_only_its_sites(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            with pytest.raises(PermissionDeniedError, match=OTHER):
                await report_queues(w.store, DIRECTOR, [status("q", site=OTHER)], 1.0)
            await report_queues(w.store, ADMIN, [status("qo", site=OTHER)], 1.0)
            await report_queues(w.store, DIRECTOR, [status("qk")], 1.0)
            assert [q.queue for q in await list_queues(w.store, DIRECTOR, "", "")] == ["qk"]
            with pytest.raises(PermissionDeniedError):
                await list_queues(w.store, DIRECTOR, OTHER, "")
            assert len(await list_queues(w.store, ADMIN, "", "")) == 2
            assert [q.queue for q in await list_queues(w.store, ADMIN, OTHER, "")] == ["qo"]

    run(body())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (status("q", health=""), "no health"),
        (status("", health="ok"), "without a queue name"),
        (status("q", site=""), "without a queue name or site"),
    ],
)
def test_malformed_reports_are_refused_whole(
    tmp_path: Path, bad: QueueStatusRecord, message: str
) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            with pytest.raises(InvalidArgumentError, match=message):
                await report_queues(w.store, DIRECTOR, [status("good"), bad], 1.0)
            assert await list_queues(w.store, ADMIN, "", "") == []

    run(body())


def test_oversized_report_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        async with world(tmp_path) as w:
            many = [status(f"q{i}") for i in range(MAX_QUEUES_PER_REPORT + 1)]
            with pytest.raises(InvalidArgumentError, match="at most"):
                await report_queues(w.store, DIRECTOR, many, 1.0)

    run(body())
