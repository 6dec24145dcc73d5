"""`gridpilot admin se` against a real central whose probe agent runs: effective read/write
with the reason, probe health and occupancy, as a table and as JSON."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gridpilot.cli import main as umbrella
from tests.cli.conftest import CliRunner, log_in
from tests.support.central_process import (
    LOCAL_SE,
    SITE,
    CentralHandle,
    default_config,
    running_central,
)

pytestmark = pytest.mark.e2e

OFF_SE = "OFF-SE"  # writes disabled by the configuration: never probed (a probe writes)
DEAD_SE = "DEAD-SE"  # its root becomes a file: fails its probes


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralHandle]:
    tmp = tmp_path_factory.mktemp("central")
    extra: list[dict[str, Any]] = [
        {"name": name, "site": SITE, "url": f"file://{tmp / 'se' / name.lower()}"}
        for name in (OFF_SE, DEAD_SE)
    ]
    extra[0]["write"] = False
    overrides = {
        "storage_elements": default_config(tmp)["storage_elements"] + extra,
        # Fast probes; never "full" whatever the test machine's disk holds.
        "storage": {"probe_period": 0.3, "probe_failures": 2, "full_threshold": 1.0},
    }
    with running_central(tmp, overrides) as handle:
        yield handle


def _listed(central: CentralHandle, run_cli: CliRunner) -> dict[str, dict[str, Any]]:
    result = run_cli(umbrella.main, ["admin", "se", "--json", "--central", central.target])
    assert result.code == 0, result.err
    return {se["name"]: se for se in json.loads(result.out)}


def test_admin_se_shows_health_refusals_and_occupancy(
    central: CentralHandle, run_cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log_in(monkeypatch, central, tmp_path / "ops.token", "ops", "belle_admin")
    dead_root = central.se_dirs[DEAD_SE]
    shutil.rmtree(dead_root)
    dead_root.write_text("not a directory")

    deadline = time.monotonic() + 30
    while True:
        ses = _listed(central, run_cli)
        local, dead = ses[LOCAL_SE]["health"], ses[DEAD_SE]["health"]
        probed = local is not None and local["last_probe_unix"] > 0
        if (probed and dead is not None and not dead["available"]) or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    ok = ses[LOCAL_SE]
    assert (ok["readable"], ok["writable"], ok["read_refusal"], ok["write_refusal"]) == (
        True,
        True,
        "",
        "",
    )
    assert ok["health"]["available"] is True
    assert ok["health"]["total_bytes"] > 0
    assert 0 <= ok["health"]["free_bytes"] <= ok["health"]["total_bytes"]

    off = ses[OFF_SE]
    assert (off["read_allowed"], off["write_allowed"]) == (True, False)
    assert (off["readable"], off["writable"]) == (True, False)
    assert off["write_refusal"] == "writes disabled by an administrator"
    assert off["health"] is None

    dead = ses[DEAD_SE]
    assert (dead["readable"], dead["writable"]) == (False, False)
    assert dead["read_refusal"].startswith("unavailable after ")
    assert dead["health"]["consecutive_failures"] >= 2
    assert "not a directory" in dead["health"]["last_error"]

    table = run_cli(umbrella.main, ["admin", "se", "--central", central.target])
    assert table.code == 0, table.err
    header = table.out.splitlines()[1]
    for column in ("Name", "Read", "Write", "Available", "Last probe (UTC)", "Occupancy"):
        assert column in header
    rows = {
        line.split("│")[1].strip(): line.split("│")
        for line in table.out.splitlines()[3:]
        if "│" in line
    }
    local_row = [cell.strip() for cell in rows[LOCAL_SE]]
    assert local_row[4:7] == ["yes", "yes", "yes"]
    assert local_row[7].startswith("20")  # a UTC date
    assert local_row[9].endswith("%)")
    off_row = [cell.strip() for cell in rows[OFF_SE]]
    assert off_row[4:10] == ["yes", "no (disabled)", "-", "never", "-", "-"]
    dead_row = [cell.strip() for cell in rows[DEAD_SE]]
    assert dead_row[4:7] == ["no (unavailable)", "no (unavailable)", "no"]
    assert int(dead_row[8]) >= 2
    assert table.out.splitlines()[-1] == ("4 storage element(s), 1 not readable, 2 not writable")
