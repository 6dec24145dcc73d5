"""The example configurations shipped in packaging/ stay valid as the schemas evolve."""

from __future__ import annotations

from pathlib import Path

from central.config import load_config as load_central_config
from sitedirectors.config import load_config as load_director_config

EXAMPLES = Path(__file__).resolve().parents[2] / "packaging" / "examples"


def test_central_example_loads() -> None:
    config = load_central_config(EXAMPLES / "central.toml")
    assert [s.name for s in config.sites] == ["LCG.KEK.jp", "LCG.DESY.de", "LCG.CERN.ch"]
    assert config.failover.ses == ["CERN-FAILOVER"]
    assert config.matcher.group_shares["belle_user"] == 3000


def test_director_example_loads() -> None:
    config = load_director_config(EXAMPLES / "director.toml")
    assert config.director.name == "sd-kek"
    assert [q.backend for q in config.queues] == ["local"]
