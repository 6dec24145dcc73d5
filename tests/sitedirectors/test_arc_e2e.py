"""Central + site director + a real ARC CE (A-REX, fork LRMS): pilots from the pilot bundle,
started by A-REX as its mapped account, run real payload jobs to Done; a queue the CE refuses
fails visibly and backs off.

The pilots run Debian's /usr/bin/python3 (GRIDPILOT_PYTHON), which has none of gridpilot's
dependencies: everything they import comes from the bundle. Jobs run as the CE's mapped
account, so what they read and write outside their session directory (the stand-in release,
the storage elements) lives in a directory that account may use, not in pytest's.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridpilot.v1 import common_pb2
from sitedirectors.bundle import PilotBundle
from sitedirectors.config import config_from_dict
from sitedirectors.director import CycleReport, Director
from tests.sitedirectors.helpers import (
    admin_queues,
    config_dict,
    job_statuses,
    job_table,
    list_pilots,
    run_until,
    submit_payload_jobs,
)
from tests.support.arc import ArcCe
from tests.support.bundle import NODE_PYTHON
from tests.support.central_process import FAILOVER_SE, LOCAL_SE, QUEUE, SITE, running_central

# One A-REX for all of them: every ARC test runs on the same test worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("arc")]

PS = common_pb2.PilotState
JS = common_pb2.JobStatus
FINAL_JOB_STATUSES = {JS.JOB_STATUS_DONE, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_KILLED}
JWT_PREFIX = "eyJ"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the CE's mapped account can use (the release, the SEs)."""
    root = Path(tempfile.mkdtemp(prefix="gridpilot-arc-e2e-"))
    root.chmod(0o755)
    for name in ("local", "failover"):
        (root / "se" / name).mkdir(parents=True)
        (root / "se" / name).chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def central_overrides(shared: Path) -> dict[str, Any]:
    return {
        "storage_elements": [
            {"name": LOCAL_SE, "site": SITE, "url": f"file://{shared / 'se' / 'local'}"},
            {"name": FAILOVER_SE, "site": SITE, "url": f"file://{shared / 'se' / 'failover'}"},
        ]
    }


def run_release_with_node_python(shared: Path) -> None:
    """The stand-in basf2 runs this test's interpreter, which the mapped account cannot
    reach; on the "node" it is Debian's (the stand-in needs only the standard library)."""
    for basf2 in shared.glob("releases/*/bin/basf2"):
        text = basf2.read_text().replace(shlex.quote(sys.executable), str(NODE_PYTHON))
        basf2.write_text(text)


def arc_config(
    tmp_path: Path, central: Any, ce: ArcCe, bundle: PilotBundle | None, **queue: Any
) -> dict[str, Any]:
    pilot = {
        "command": [],
        "environment": {"GRIDPILOT_PYTHON": str(NODE_PYTHON)},
        "idle_timeout": 3.0,
        "extra_args": ["--min-disk-mb", "1", "--kill-grace", "3"],
        **queue.pop("pilot", {}),
    }
    options = ce.options(status_lag=30.0, vanish_grace=30.0, **queue.pop("backend_options", {}))
    config = config_dict(
        tmp_path, central, backend="arc", pilot=pilot, backend_options=options, **queue
    )
    if bundle is not None:
        config["director"]["pilot_bundle"] = str(bundle.path)
    return config


def pilots_done(central: Any) -> bool:
    pilots = list_pilots(central)
    return bool(pilots) and {p.state for p in pilots} == {PS.PILOT_STATE_DONE}


def test_pilots_from_the_bundle_run_jobs_to_done(
    tmp_path: Path, shared_dir: Path, arc: ArcCe, pilot_bundle: PilotBundle
) -> None:
    with running_central(tmp_path / "central", central_overrides(shared_dir)) as central:
        job_ids, software_setup = submit_payload_jobs(central, shared_dir, 3)
        run_release_with_node_python(shared_dir)
        config = arc_config(
            tmp_path,
            central,
            arc,
            pilot_bundle,
            max_total=2,
            max_waiting=2,
            pilot={"software_setup": software_setup},
        )
        director = Director(config_from_dict(config))
        try:
            run_until(
                director,
                lambda: set(job_statuses(central)) <= FINAL_JOB_STATUSES,
                timeout=150,
                what="jobs to end through ARC pilots",
            )
            assert job_statuses(central) == [JS.JOB_STATUS_DONE] * 3, job_table(central)
            # Idle pilots end on their own and say so; their logs go to central once A-REX
            # shows their jobs ended too (its status lags).
            run_until(
                director,
                lambda: pilots_done(central) and all(p.log_tail for p in list_pilots(central)),
                timeout=90,
                what="pilots Done with their logs in central",
            )
        finally:
            director.close()
        pilots = list_pilots(central)
    assert len(job_ids) == 3
    assert 1 <= len(pilots) <= 2
    assert sum(p.jobs_run for p in pilots) == 3
    for p in pilots:
        assert p.backend == "arc"
        assert p.registered_unix > 0
        assert p.log_tail, f"pilot {p.pilot_id} is Done without a log tail in central"
        assert "pilot.registered" in p.log_tail
        assert 'meaning="pilot ended normally"' in p.log_tail
        assert JWT_PREFIX not in p.log_tail


@pytest.mark.parametrize("refusal", ["queue", "credentials"])
def test_refused_queue_fails_visibly_and_backs_off(
    tmp_path: Path, shared_dir: Path, arc: ArcCe, refusal: str
) -> None:
    if refusal == "queue":
        options: dict[str, Any] = {"queue": "nosuch"}
        said = "Requested queue nosuch is not allowed"
    else:
        options = {"cert_file": str(arc.stranger.cert), "key_file": str(arc.stranger.key)}
        said = "credentials refused"
    with running_central(tmp_path / "central", central_overrides(shared_dir)) as central:
        job_ids, _ = submit_payload_jobs(central, shared_dir, 1)
        config = arc_config(
            tmp_path, central, arc, None, pilot={"command": ["/bin/true"]},
            backend_options=options,
        )  # fmt: skip
        director = Director(config_from_dict(config))
        skip_cycles = config["director"]["failing_queue_skip_cycles"]
        try:
            first = director.run_cycle()
            [queue] = [q for q in admin_queues(central, tmp_path) if q["queue"] == QUEUE]
            paused: list[CycleReport] = [director.run_cycle() for _ in range(skip_cycles)]
            again = director.run_cycle()
        finally:
            director.close()
        pilots = list_pilots(central)
        statuses = job_statuses(central)
    assert said in first.failing[QUEUE]
    assert arc.endpoint in first.failing[QUEUE]
    assert queue["backend"] == "arc"
    assert queue["state"] == "failing"
    assert said in queue["error"]
    assert queue["skip_cycles_left"] == skip_cycles
    assert all(QUEUE in r.skipped and not r.submitted for r in paused)
    assert QUEUE in again.failing
    assert pilots
    assert {p.state for p in pilots} == {PS.PILOT_STATE_ABORTED}
    assert all(said in p.status_reason for p in pilots)
    assert statuses == [JS.JOB_STATUS_WAITING] * len(job_ids)
    assert not (tmp_path / "director" / "arc" / "references").exists()
