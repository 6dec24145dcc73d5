"""Central's TOML configuration: loading, defaults and validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.config import CentralConfig, ConfigError, config_from_dict, load_config

VALID = """
[central]
listen = "0.0.0.0:50051"
data_dir = "/var/lib/gridpilot"
heartbeat_period = 10
stalled_after = 60
sandbox_max_bytes = 5000000

[[sites]]
name = "LCG.KEK.jp"
local_ses = ["KEK-SE"]
default_output_se = "KEK-SE"
[[sites.ces]]
name = "ce01.kek.jp"
queues = ["long", "short"]

[[sites]]
name = "LCG.DESY.de"
local_ses = ["DESY-SE"]

[[storage_elements]]
name = "KEK-SE"
site = "LCG.KEK.jp"
url = "file:///data/kek-se"

[[storage_elements]]
name = "DESY-SE"
site = "LCG.DESY.de"
url = "file:///data/desy-se"
write = false

[distances."LCG.KEK.jp"]
"DESY-SE" = 10

[failover]
ses = ["DESY-SE"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(text)
    return path


def test_valid_config_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, VALID))
    assert isinstance(cfg, CentralConfig)
    assert cfg.central.listen == "0.0.0.0:50051"
    assert cfg.central.heartbeat_period == 10.0
    assert cfg.central.sandbox_max_bytes == 5_000_000
    # Unset fields keep their defaults.
    assert cfg.central.max_rescheduling == 3
    assert cfg.central.reschedule_stalled_after == 300.0
    kek = cfg.site("LCG.KEK.jp")
    assert kek is not None
    assert kek.ces[0].name == "ce01.kek.jp"
    assert kek.ces[0].queues == ["long", "short"]
    assert kek.default_output_se == "KEK-SE"
    assert cfg.site("nowhere") is None
    desy_se = cfg.storage_element("DESY-SE")
    assert desy_se is not None
    assert (desy_se.read, desy_se.write) == (True, False)
    assert cfg.storage_element("nope") is None
    assert cfg.distances == {"LCG.KEK.jp": {"DESY-SE": 10.0}}
    assert cfg.failover.ses == ["DESY-SE"]


def test_empty_config_is_all_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ""))
    assert cfg.central.listen == "127.0.0.1:50051"
    assert cfg.sites == []
    assert cfg.storage_elements == []


def _base() -> dict[str, object]:
    return {
        "sites": [{"name": "S1", "local_ses": ["SE1"]}],
        "storage_elements": [{"name": "SE1", "site": "S1", "url": "file:///se1"}],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"sites": [{"name": "S1"}, {"name": "S1"}]},
            "duplicate site name(s): S1",
        ),
        (
            {
                "storage_elements": [
                    {"name": "SE1", "site": "S1", "url": "file:///a"},
                    {"name": "SE1", "site": "S1", "url": "file:///b"},
                ]
            },
            "duplicate storage element name(s): SE1",
        ),
        (
            {"storage_elements": [{"name": "SE1", "site": "S9", "url": "file:///a"}]},
            "storage element 'SE1' names unknown site 'S9'",
        ),
        (
            {"storage_elements": [{"name": "SE1", "site": "S1", "url": "gsiftp://host//a"}]},
            "storage element 'SE1' has unsupported URL 'gsiftp://host//a'",
        ),
        (
            {"sites": [{"name": "S1", "local_ses": ["SE1", "GHOST-SE"]}]},
            "site 'S1' names unknown storage element 'GHOST-SE'",
        ),
        (
            {"sites": [{"name": "S1", "default_output_se": "OUT-SE"}]},
            "site 'S1' names unknown storage element 'OUT-SE'",
        ),
        ({"distances": {"S9": {}}}, "distances: unknown site 'S9'"),
        ({"distances": {"S1": {"X-SE": 1}}}, "distances.S1: unknown storage element 'X-SE'"),
        ({"distances": {"S1": {"SE1": -1}}}, "distances.S1.SE1: negative distance -1"),
        ({"failover": {"ses": ["F-SE"]}}, "failover.ses: unknown storage element 'F-SE'"),
        ({"storage": {"probe_failures": 0}}, "storage.probe_failures must be at least 1"),
        ({"storage": {"full_threshold": 1.5}}, "storage.full_threshold must be in (0, 1]"),
        ({"storage": {"probe_dir": "probes"}}, "storage.probe_dir must be an LFN directory"),
        ({"storage": {"cost_alpha": 0}}, "storage.cost_alpha must be in (0, 1]"),
        ({"storage": {"probe_period": -1}}, "storage.probe_period must not be negative"),
        ({"central": {"heartbeat_period": 0}}, "central.heartbeat_period must be positive"),
        ({"central": {"failover_period": -1}}, "central.failover_period must be positive"),
        (
            {"central": {"heartbeat_period": 60, "stalled_after": 30}},
            "central.stalled_after must be longer than central.heartbeat_period",
        ),
        ({"central": {"sandbox_max_bytes": 0}}, "central.sandbox_max_bytes must be positive"),
        ({"central": {"max_rescheduling": -1}}, "central.max_rescheduling must not be negative"),
    ],
)
def test_each_validation_error_names_the_problem(change: dict[str, object], message: str) -> None:
    data = {**_base(), **change}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert message in str(err.value)
    assert str(err.value).startswith("invalid configuration: ")


def test_all_problems_are_reported_together() -> None:
    data = {
        **_base(),
        "failover": {"ses": ["F-SE"]},
        "central": {"sandbox_max_bytes": 0},
    }
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert "failover.ses: unknown storage element 'F-SE'" in str(err.value)
    assert "central.sandbox_max_bytes must be positive" in str(err.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[central]\nlisten = "x"\nlistne = "typo"\n', "listne"),
        ('colour = "blue"\n', "colour"),
        ('[[sites]]\nname = "S"\nbaned = true\n', "baned"),
    ],
)
def test_unknown_field_is_named(tmp_path: Path, text: str, field: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert field in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, '[central]\nheartbeat_period = "often"\n')
    with pytest.raises(ConfigError, match=r"heartbeat_period"):
        load_config(path)


def test_missing_required_field_is_named() -> None:
    with pytest.raises(ConfigError, match="name"):
        config_from_dict({"sites": [{"local_ses": []}]})


def test_bad_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[central\nlisten = \n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "not valid TOML" in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="configuration file not found") as err:
        load_config(path)
    assert str(path) in str(err.value)
