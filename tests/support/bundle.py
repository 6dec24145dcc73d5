"""The pilot bundle in tests: one real build per session (tests/conftest.py `pilot_bundle`)
for the running interpreter's Python only, hand-made tarballs for the failure cases, and
running the directors' start script with `sh`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

from gridpilot.bundle import LAUNCHER_SCRIPT, BuildOptions, BuiltBundle, build_bundle, python_tag
from gridpilot.bundle.archive import write_tar_gz
from sitedirectors.bundle import PilotBundle
from sitedirectors.start_script import (
    BUNDLE_LAUNCHER,
    BUNDLE_MANIFEST,
    BundleOnNode,
    StartScript,
    render_start_script,
)
from tests.support.backends import require_debian_backend

# Fixed build time: the session bundle and a rebuild from the same inputs must be identical.
TEST_BUILD_EPOCH = 1_700_000_000
START_TIMEOUT = 120.0

# Run by Debian's python3 with only the bundle on PYTHONPATH: the pilot, the wrapper and the
# native parts of their dependencies load from the bundle and work.
IMPORT_CHECK = """
import asyncio, json, sys
import pilot.main, wrapper.main, grpc, google.protobuf, msgspec, psutil, jwt, uvloop
import wrapper.se.xrootd, wrapper.se.webdav, XRootD.client, httpx
import cryptography.hazmat.bindings._rust
from cryptography.hazmat.primitives.asymmetric import ec
import gridpilot.v1.pilots_pb2_grpc
key = ec.generate_private_key(ec.SECP256R1())
token = jwt.encode({"sub": "pilot"}, key, algorithm="ES256")
assert jwt.decode(token, key.public_key(), algorithms=["ES256"])["sub"] == "pilot"
assert msgspec.json.decode(msgspec.json.encode({"a": 1})) == {"a": 1}
assert psutil.Process().pid > 0
grpc.insecure_channel("127.0.0.1:1").close()
loop = uvloop.new_event_loop(); loop.run_until_complete(asyncio.sleep(0)); loop.close()
names = ("pilot.main", "wrapper.main", "grpc", "google.protobuf", "msgspec", "psutil", "jwt",
         "uvloop", "cryptography", "cryptography.hazmat.bindings._rust", "_cffi_backend",
         "gridpilot", "XRootD.client", "httpx")
print(json.dumps({name: sys.modules[name].__file__ for name in names}))
"""


# Debian's own interpreter, as on a worker node: none of gridpilot's dependencies, so whatever
# a pilot run by it imports must come from the bundle.
NODE_PYTHON = Path("/usr/bin/python3")


def running_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _node_python_fits() -> bool:
    if not NODE_PYTHON.is_file():
        return False
    probe = subprocess.run(
        [str(NODE_PYTHON), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return probe.stdout.strip() == running_python()


def require_node_python() -> None:
    """Debian's python3 of the session bundle's Python version (installed when missing)."""
    require_debian_backend(
        f"Debian's {NODE_PYTHON} (Python {running_python()}, as the session bundle)",
        ["python3"],
        [str(NODE_PYTHON)],
        _node_python_fits,
    )


def build_test_bundle(out_dir: Path) -> BuiltBundle:
    """The real build (probe, pip, manifest, archive) for this interpreter's Python only."""
    options = BuildOptions(out_dir, pythons=(running_python(),), build_time=TEST_BUILD_EPOCH)
    return build_bundle(options)


def as_pilot_bundle(built: BuiltBundle) -> PilotBundle:
    return PilotBundle.load(built.path)


def manifest_of(files: Mapping[str, bytes]) -> str:
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items()))


def small_bundle(root: Path) -> dict[str, bytes]:
    """The files of a minimal bundle that verifies once a manifest of them is added."""
    tag = python_tag(running_python())
    files = {
        "bin/gridpilot-pilot": LAUNCHER_SCRIPT.encode(),
        "bundle.json": json.dumps({"python_tags": [tag], "gridpilot_version": "9"}).encode(),
        "app/pilot/__main__.py": b"print('pilot')\n",
        "app/wrapper/__init__.py": b"",
        f"lib/{tag}/dep.py": b"",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "bin/gridpilot-pilot").chmod(0o755)
    return files


def echo_bundle(directory: Path) -> PilotBundle:
    """A bundle in the real layout whose launcher only says how it was started:
    "launcher from <unpacked bundle>: <its arguments>"."""
    launcher = b'#!/bin/sh\necho "launcher from $GRIDPILOT_BUNDLE: $*"\n'
    manifest = f"{hashlib.sha256(launcher).hexdigest()}  {BUNDLE_LAUNCHER}\n".encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "echo-bundle.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data, mode in (
            (BUNDLE_MANIFEST, manifest, 0o644),
            (BUNDLE_LAUNCHER, launcher, 0o755),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return PilotBundle.load(path)


def lying_bundle(root: Path, out: Path) -> str:
    """A bundle whose manifest has a wrong checksum for its launcher; returns its sha256."""
    launcher = b"#!/bin/sh\necho should-not-run\n"
    info = b'{"python_tags": []}\n'
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "gridpilot-pilot").write_bytes(launcher)
    (root / "bin" / "gridpilot-pilot").chmod(0o755)
    (root / "bundle.json").write_bytes(info)
    wrong = hashlib.sha256(launcher + b"tampered").hexdigest()
    right = hashlib.sha256(info).hexdigest()
    (root / "MANIFEST.sha256").write_text(f"{wrong}  bin/gridpilot-pilot\n{right}  bundle.json\n")
    tarball_of_tree(root, out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def tarball_of_tree(root: Path, out: Path, mtime: int = TEST_BUILD_EPOCH) -> None:
    with out.open("wb") as fh:
        write_tar_gz(root, fh, mtime)


def start_script_for(
    bundle_path: Path,
    sha256: str,
    base: Path,
    *,
    command: tuple[str, ...] = (),
    arguments: tuple[str, ...] = (),
    environment: Mapping[str, str] | None = None,
    pilot_id: str = "p-bundle-test",
) -> Path:
    """Render the director's start script for a bundle on this 'node' into base/start.sh;
    unpacked bundles go to base/cache."""
    spec = StartScript(
        pilot_id=pilot_id,
        work_dir=str(base / "work" / pilot_id),
        command=command,
        arguments=arguments,
        environment=dict(environment or {}),
        bundle=BundleOnNode(path=str(bundle_path), sha256=sha256, cache_dir=str(base / "cache")),
    )
    script = base / f"start-{pilot_id}.sh"
    base.mkdir(parents=True, exist_ok=True)
    script.write_text(render_start_script(spec), encoding="utf-8")
    return script


def run_start_script(
    script: Path, path_dirs: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path_dirs is not None:
        env["PATH"] = path_dirs
    return subprocess.run(
        ["/bin/sh", str(script)],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        env=env,
        check=False,
    )
