"""Director configuration: defaults, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridpilot.config_files import ConfigError
from sitedirectors.config import config_from_dict, load_config

EXAMPLE = """
[director]
name = "kek-director"
central = "central.example:50051"
cycle_period = 30
work_dir = "/var/lib/gridpilot-director"
ca = "/etc/gridpilot/ca.pem"
token_file = "/etc/gridpilot/director.token"

[[queues]]
name = "kek-long"
site = "LCG.KEK.jp"
ce = "ce01.kek.jp"
backend = "local"
max_waiting = 5
max_total = 50
max_per_cycle = 5
slots = 4
memory_mb = 8000
cpu_time = 172800
platform = "EL9"
tags = ["GPU"]

[queues.pilot]
idle_timeout = 120
max_jobs = 10
software_setup = "source /cvmfs/belle.cern.ch/tools/b2setup {release}"
extra_args = ["--heartbeat-period", "10"]
environment = { X509_CERT_DIR = "/etc/grid-security/certificates" }

[queues.backend_options]
kill_grace = 5.0
"""


def minimal(**queue: Any) -> dict[str, Any]:
    return {
        "director": {"name": "d", "central": "127.0.0.1:1", "ca": "/ca.pem", "token_file": "/t"},
        "queues": [{"name": "q", "site": "S", "ce": "C", **queue}],
    }


def test_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "director.toml"
    path.write_text(EXAMPLE)
    cfg = load_config(path)
    assert cfg.director.cycle_period == 30.0
    assert cfg.director.failing_queue_skip_cycles == 5
    assert cfg.director.ca == "/etc/gridpilot/ca.pem"
    assert cfg.director.token_file == "/etc/gridpilot/director.token"
    assert not cfg.director.insecure
    queue = cfg.queue("kek-long")
    assert queue is not None
    assert queue.slots == 4
    assert queue.tags == ["GPU"]
    assert queue.pilot.max_jobs == 10
    assert queue.pilot.environment["X509_CERT_DIR"].startswith("/etc")
    assert queue.backend_options == {"kill_grace": 5.0}
    assert cfg.queue("missing") is None


def test_defaults() -> None:
    cfg = config_from_dict(minimal())
    [queue] = cfg.queues
    assert queue.backend == "local"
    assert queue.enabled
    assert queue.pilot.command == []
    assert cfg.director.log_cap_bytes == 64 * 1024


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"director": {"name": "d"}}, "central"),
        ({**minimal(), "extra": 1}, "extra"),
        (minimal(maxwaiting=3), "maxwaiting"),
        (minimal(pilot={"idle": 3}), "idle"),
        (minimal(max_waiting="many"), "max_waiting"),
        (minimal(slots=0), r"queues\[q\]\.slots must be positive"),
        (minimal(max_per_cycle=-1), "max_per_cycle must not be negative"),
        (minimal(max_waiting=20, max_total=10), "max_waiting must not exceed max_total"),
        (minimal(ramp_up=0, ramp_up_step=0), "ramp_up and ramp_up_step are both 0"),
        (minimal(ramp_up=-1.0), "ramp_up must not be negative"),
        (minimal(pilot={"idle_timeout": 0}), "pilot.idle_timeout must be positive"),
        (minimal(site=" "), r"queues\[q\]\.site must not be empty"),
        ({**minimal(), "director": {"name": "d", "central": "nohost"}}, "host:port"),
        (
            {**minimal(), "director": {"name": "d", "central": "h:1", "cycle_period": 0}},
            "director.cycle_period must be positive",
        ),
        (
            {**minimal(), "director": {"name": "d", "central": "h:1", "log_level": "LOUD"}},
            "director.log_level",
        ),
        (
            {**minimal(), "director": {"name": "d", "central": "h:1", "ca": "/ca.pem"}},
            "director.token_file must name the director's token file",
        ),
        (
            {**minimal(), "director": {"name": "d", "central": "h:1", "token_file": "/t"}},
            r"director.ca must name the CA certificate of central \(or insecure = true\)",
        ),
    ],
)
def test_invalid(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_insecure_needs_no_ca() -> None:
    data = minimal()
    data["director"] = {"name": "d", "central": "h:1", "token_file": "/t", "insecure": True}
    assert config_from_dict(data).director.insecure


def test_duplicate_queues() -> None:
    data = minimal()
    data["queues"].append(dict(data["queues"][0]))
    with pytest.raises(ConfigError, match="duplicate queue name"):
        config_from_dict(data)


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(minimal(slots=0, memory_mb=0))
    assert "slots" in str(info.value)
    assert "memory_mb" in str(info.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[director\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)
    invalid = tmp_path / "invalid.toml"
    invalid.write_text('[director]\nname = "d"\n')
    with pytest.raises(ConfigError, match=r"invalid\.toml: invalid configuration"):
        load_config(invalid)
