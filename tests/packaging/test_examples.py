"""The example configurations shipped in packaging/ stay valid as the schemas evolve."""

from __future__ import annotations

from pathlib import Path

from central.config import load_config as load_central_config
from sitedirectors.base import Backend, BackendContext
from sitedirectors.config import load_config as load_director_config
from sitedirectors.registry import default_registry

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


def _backends(config_file: Path, tmp_path: Path) -> dict[str, Backend]:
    """The example's queues as backends, with its key and known_hosts paths pointing at
    files that exist here (the backends check they do); nothing is contacted."""
    config = load_director_config(config_file)
    for name in ("id_ed25519", "known_hosts"):
        (tmp_path / name).write_text("")
    backends: dict[str, Backend] = {}
    for queue in config.queues:
        options = {
            key: str(tmp_path / Path(value).name) if key in ("key_file", "known_hosts") else value
            for key, value in queue.backend_options.items()
        }
        context = BackendContext(queue.name, tmp_path, options)
        backends[queue.name] = default_registry().create(queue.backend, context)
    return backends


def test_slurm_director_example_loads(tmp_path: Path) -> None:
    backends = _backends(EXAMPLES / "director-slurm.toml", tmp_path)
    assert {name: b.name for name, b in backends.items()} == {"desy-grid": "slurm"}


def test_ssh_director_example_loads(tmp_path: Path) -> None:
    backends = _backends(EXAMPLES / "director-ssh.toml", tmp_path)
    assert {name: b.name for name, b in backends.items()} == {
        "kek-bigmem": "ssh",
        "kek-cluster": "ssh",
    }
    for backend in backends.values():
        backend.close()
