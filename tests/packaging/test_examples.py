"""The example configurations shipped in packaging/ stay valid as the schemas evolve."""

from __future__ import annotations

from pathlib import Path

from central.config import load_config as load_central_config
from sitedirectors.base import Backend, BackendContext
from sitedirectors.config import load_config as load_director_config
from sitedirectors.registry import default_registry
from tests.support.bundle import echo_bundle

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


# What the examples' credential files hold (the backends read them when they are built).
_LOCAL_FILES = {
    "key_file": "",
    "cert_file": "",
    "known_hosts": "",
    "token_file": "a-token\n",
    "credentials_file": 'key_id = "AKIA"\nsecret = "s"\nusername = "u"\npassword = "p"\n'
    'tenant = "t"\n',
}


def _backends(config_file: Path, tmp_path: Path) -> dict[str, Backend]:
    """The example's queues as backends, with its key, known_hosts, token and credentials
    paths pointing at files that exist here (the backends check they do); nothing is
    contacted."""
    config = load_director_config(config_file)
    # A real bundle stands in for the example's director.pilot_bundle.
    bundle = echo_bundle(tmp_path / "bundle") if config.director.pilot_bundle else None
    backends: dict[str, Backend] = {}
    for queue in config.queues:
        options = dict(queue.backend_options)
        for key, content in _LOCAL_FILES.items():
            if key in options:
                local = tmp_path / Path(options[key]).name
                local.write_text(content)
                local.chmod(0o600)
                options[key] = str(local)
        if "ca_dir" in options:
            options["ca_dir"] = str(tmp_path)
        context = BackendContext(
            queue.name, tmp_path, options, bundle=bundle, director=config.director.name
        )
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


def test_htcondorce_director_example_loads(tmp_path: Path) -> None:
    backends = _backends(EXAMPLES / "director-htcondorce.toml", tmp_path)
    assert {name: b.name for name, b in backends.items()} == {"kek-ce01": "htcondorce"}


def test_cloud_director_example_loads(tmp_path: Path) -> None:
    backends = _backends(EXAMPLES / "director-cloud.toml", tmp_path)
    assert {name: b.name for name, b in backends.items()} == {
        "cloud-ec2": "cloud",
        "cloud-openstack": "cloud",
    }


def test_arc_director_example_loads(tmp_path: Path) -> None:
    backends = _backends(EXAMPLES / "director-arc.toml", tmp_path)
    assert {name: b.name for name, b in backends.items()} == {"desy-arc01": "arc"}
