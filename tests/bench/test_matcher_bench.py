"""`gridpilot bench matcher --quick` end to end: real central, real load-generator processes.

Runs in CI (plain `python -m pytest` runs every test, e2e ones included): it fails on errors or
lost/duplicated jobs, never on speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from central.config import config_from_dict
from gridpilot.bench.central_proc import bench_config
from gridpilot.bench.main import build_parser, options_from
from gridpilot.bench.matcher_bench import QUICK, Options, run
from gridpilot.bench.workload import batches, shapes

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_workload_spreads_jobs_over_every_shape() -> None:
    all_shapes = shapes(queues=20, sites=4, groups=5)
    assert len({(s.group, s.owner, s.site, s.cpu_time, s.priority) for s in all_shapes}) == 20
    assert {s.group for s in all_shapes} == {f"bench_g{g}" for g in range(5)}
    sizes: dict[int, int] = {}
    names: list[str] = []
    for shape, specs in batches(all_shapes, 1005, batch_size=30, start=7):
        assert len(specs) <= 30
        sizes[all_shapes.index(shape)] = sizes.get(all_shapes.index(shape), 0) + len(specs)
        names += [s.job_name for s in specs]
    assert sum(sizes.values()) == 1005
    assert max(sizes.values()) - min(sizes.values()) <= 1
    assert len(set(names)) == 1005
    assert "j7" in names


def test_config_is_valid_toml_with_every_site(tmp_path: Path) -> None:
    text = bench_config(tmp_path, sites=3, groups=2, heartbeat_period=0.5)
    assert text.count("[[sites]]") == 3
    assert 'name = "bench_g1"' in text
    config = config_from_dict(tomllib.loads(text))
    assert len(config.sites) == 3


def test_options_quick_and_overrides() -> None:
    args = build_parser().parse_args(["matcher", "--quick", "--jobs", "123"])
    options = options_from(args)
    assert options.jobs == 123
    assert options.pilots == QUICK.pilots
    assert options_from(build_parser().parse_args(["matcher"])).jobs == Options().jobs
    with pytest.raises(ValueError, match="at least 1"):
        options_from(build_parser().parse_args(["matcher", "--pilots", "0"]))


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_small_run_matches_without_loss_or_duplicates(tmp_path: Path) -> None:
    options = Options(
        jobs=3_000,
        queues=12,
        sites=3,
        groups=3,
        pilots=12,
        heartbeat_period=0.5,
        concurrency=8,
        duration=3.0,
        echo_duration=1.0,
        bulk_jobs=500,
        workers=2,
        work_dir=str(tmp_path / "work"),
    )
    result = run(options)
    assert result.problems == []
    assert result.matches > 0
    assert result.duplicated_matches == 0
    assert result.lost_jobs == 0
    assert result.bulk_submit_jobs == 500
    assert result.sessions_opened == 12
    assert result.heartbeats_per_s > 0
    assert result.echo_rpc_per_s > 0
    assert result.restart_s > 0
    assert result.p99_ms >= result.p50_ms > 0


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_quick_command_line_json() -> None:
    """The CI entry point exactly as documented: `gridpilot bench matcher --quick --json`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "gridpilot", "bench", "matcher", "--quick", "--json"],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["matches"] > 0
    assert data["duplicated_matches"] == 0
    assert data["lost_jobs"] == 0
    assert data["problems"] == []
