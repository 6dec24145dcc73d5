"""`gridpilot admin queues` and `gridpilot admin pilot-log`: what a director's failing queue
and its refused pilots look like to an operator, from central alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridpilot.cli import main as umbrella
from sitedirectors.director import Director
from tests.cli.conftest import CliRunner, log_in
from tests.sitedirectors.helpers import DIRECTOR, director_config, submit_jobs
from tests.support.central_process import QUEUE, SITE, CentralHandle

pytestmark = pytest.mark.e2e


def _c(central: CentralHandle) -> list[str]:
    return ["--central", central.target]


def test_failing_queue_and_refused_pilot_seen_by_the_operator(
    central: CentralHandle, run_cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:

    submit_jobs(central, 1)
    cfg = director_config(tmp_path, central, max_per_cycle=1)
    # A broken backend setting: every submission fails, as a bad partition would.
    cfg.queues[0].backend_options["shell"] = str(tmp_path / "no-such-shell")
    director = Director(cfg)
    try:
        report = director.run_cycle()
    finally:
        director.close()
    assert QUEUE in report.failing

    log_in(monkeypatch, central, tmp_path / "ops.token", "ops", "belle_admin")
    listed = run_cli(umbrella.main, ["admin", "queues", "--json", *_c(central)])
    assert listed.code == 0, listed.err
    [queue] = [q for q in json.loads(listed.out) if q["queue"] == QUEUE]
    assert queue["director"] == DIRECTOR
    assert queue["site"] == SITE
    assert queue["backend"] == "local"
    assert queue["state"] == "failing"
    assert "no-such-shell" in queue["error"]
    assert queue["skip_cycles_left"] == cfg.director.failing_queue_skip_cycles
    assert queue["reported_at"] > 0

    table = run_cli(umbrella.main, ["admin", "queues", "--site", SITE, *_c(central)])
    assert table.code == 0, table.err
    assert QUEUE in table.out
    assert "failing" in table.out

    pilots = json.loads(run_cli(umbrella.main, ["admin", "pilots", "--json", *_c(central)]).out)
    [aborted] = [p for p in pilots if p["queue"] == QUEUE]
    shown = run_cli(umbrella.main, ["admin", "pilot-log", aborted["pilot_id"], *_c(central)])
    assert shown.code == 0, shown.err
    assert "no log kept" in shown.out
    assert "submission failed" in shown.out

    missing = run_cli(umbrella.main, ["admin", "pilot-log", "no-such-pilot", *_c(central)])
    assert missing.code != 0
    assert "no pilot 'no-such-pilot'" in missing.err
