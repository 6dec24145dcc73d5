"""`gridpilot admin bundle build`: a self-contained pilot bundle for x86_64 Linux nodes.

Steps: probe what the pilot imports (deps.py), copy the project's packages into app/, install
the pinned third-party wheels once per target CPython into lib/cpXY/ (pip, binary wheels for
manylinux x86_64 only, so the builder's own platform does not matter), write bundle.json, the
launcher and MANIFEST.sha256, and pack it all reproducibly. Everything happens in a temporary
directory inside the output directory; only a complete bundle is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gridpilot import __version__
from gridpilot.bundle.archive import write_tar_gz
from gridpilot.bundle.deps import RuntimeNeeds, runtime_needs
from gridpilot.bundle.installed import InstalledSet, read_installed
from gridpilot.bundle.launcher import LAUNCHER_SCRIPT
from gridpilot.bundle.layout import (
    APP_DIR,
    DEFAULT_PYTHONS,
    FORMAT_VERSION,
    INFO_FILE,
    LAUNCHER,
    LIB_DIR,
    PLATFORMS,
    BundleError,
    bundle_file_name,
    python_tag,
)
from gridpilot.bundle.manifest import sha256_of_path, write_manifest
from gridpilot.logs import get_logger

log = get_logger(__name__)

# A cold download of every wheel for one Python is a few tens of MB.
_PIP_TIMEOUT = 1800.0
_PIP_TAIL_LINES = 8
# pip settings from the builder's environment that would send the install elsewhere.
_PIP_ENV_DROPPED = ("PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_USER", "PIP_EDITABLE")

StepCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildOptions:
    out_dir: Path
    pythons: tuple[str, ...] = DEFAULT_PYTHONS
    # Extra wheel directories (offline sites), and anything else for `pip install`.
    find_links: tuple[Path, ...] = ()
    pip_options: tuple[str, ...] = ()
    # Seconds since the epoch for bundle.json and every archive entry (SOURCE_DATE_EPOCH):
    # the same time and inputs give a byte-identical bundle. None: now.
    build_time: int | None = None


@dataclass(frozen=True)
class BuiltBundle:
    path: Path
    sha256: str
    size: int
    checksum_file: Path
    python_tags: tuple[str, ...]
    gridpilot_version: str
    info: dict[str, object] = field(default_factory=dict)


def build_time_from_env(environ: dict[str, str] | None = None) -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) when set, else None."""
    value = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    try:
        epoch = int(value)
    except ValueError as exc:
        raise BundleError(f"SOURCE_DATE_EPOCH must be an integer, got {value!r}") from exc
    if epoch < 0:
        raise BundleError(f"SOURCE_DATE_EPOCH must not be negative, got {epoch}")
    return epoch


def pip_command(
    target: Path,
    version: str,
    requirements: dict[str, str],
    constraints_file: Path,
    options: BuildOptions,
) -> list[str]:
    """The `pip install` that puts one CPython's dependencies into `target`."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(target),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        version,
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += ["--no-compile", "--no-warn-script-location", "--progress-bar", "off"]
    command += ["--constraint", str(constraints_file)]
    for directory in options.find_links:
        command += ["--find-links", str(directory)]
    command += list(options.pip_options)
    command += [f"{name}=={pinned}" for name, pinned in requirements.items()]
    return command


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PIP_ENV_DROPPED}
    env.update(
        PIP_ROOT_USER_ACTION="ignore",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_REQUIRE_VIRTUALENV="false",
    )
    return env


def _install(
    target: Path, version: str, needs: RuntimeNeeds, work: Path, options: BuildOptions
) -> None:
    constraints = work / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in needs.constraints.items()))
    command = pip_command(target, version, needs.requirements, constraints, options)
    log.info("bundle.pip", python=version, target=str(target))
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT,
            env=_pip_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BundleError(
            f"pip install for Python {version} did not finish within {_PIP_TIMEOUT:.0f} s"
        ) from exc
    if result.returncode != 0:
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        tail = "\n".join(lines[-_PIP_TAIL_LINES:])
        raise BundleError(
            f"pip install for Python {version} failed (exit {result.returncode}):\n{tail}"
        )
    # Console scripts of the dependencies (e.g. cffi's) carry this builder's interpreter path.
    shutil.rmtree(target / "bin", ignore_errors=True)


def _copy_app(app: dict[str, Path], dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    for name, source in sorted(app.items()):
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest / source.name)


def _info(
    epoch: int, needs: RuntimeNeeds, installed: dict[str, tuple[str, InstalledSet]]
) -> dict[str, object]:
    return {
        "format": FORMAT_VERSION,
        "gridpilot_version": __version__,
        "built": datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "built_epoch": epoch,
        "app": sorted(needs.app),
        "platforms": list(PLATFORMS),
        "pinned": needs.requirements,
        "python_tags": sorted(installed),
        "pythons": {
            tag: {
                "version": version,
                "requirements": found.versions,
                "min_glibc": found.min_glibc,
            }
            for tag, (version, found) in sorted(installed.items())
        },
    }


def _steps(pythons: Sequence[str]) -> list[str]:
    return [
        "finding what the pilot imports",
        "copying the pilot, wrapper and gridpilot packages",
        *(f"installing dependencies for Python {v}" for v in pythons),
        "writing bundle.json, the launcher and MANIFEST.sha256",
        "packing the bundle",
    ]


def build_bundle(options: BuildOptions, on_step: StepCallback | None = None) -> BuiltBundle:
    """Build <out_dir>/gridpilot-pilot-<version>.tar.gz and its .sha256 beside it."""
    if not options.pythons:
        raise BundleError("no Python version to build for")
    tags = {python_tag(v): v for v in options.pythons}
    steps = _steps(list(tags.values()))
    done = 0

    def step() -> None:
        nonlocal done
        if on_step is not None:
            on_step(steps[done], done, len(steps))
        done += 1

    epoch = int(time.time()) if options.build_time is None else options.build_time
    out_dir = options.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # Inside out_dir, so the final renames stay on one file system and are atomic.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".bundle-build-") as tmp:
        work = Path(tmp)
        root = work / "root"
        step()
        needs = runtime_needs()
        step()
        _copy_app(needs.app, root / APP_DIR)
        installed: dict[str, tuple[str, InstalledSet]] = {}
        for tag, version in tags.items():
            step()
            target = root / LIB_DIR / tag
            _install(target, version, needs, work, options)
            installed[tag] = (version, read_installed(target))
        step()
        launcher = root / LAUNCHER
        launcher.parent.mkdir(parents=True, exist_ok=True)
        launcher.write_text(LAUNCHER_SCRIPT, encoding="utf-8")
        launcher.chmod(0o755)
        info = _info(epoch, needs, installed)
        (root / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        write_manifest(root)
        step()
        path, digest = _pack(root, work, out_dir, epoch)
    result = BuiltBundle(
        path=path,
        sha256=digest,
        size=path.stat().st_size,
        checksum_file=path.with_name(path.name + ".sha256"),
        python_tags=tuple(sorted(tags)),
        gridpilot_version=__version__,
        info=info,
    )
    if on_step is not None:
        on_step("done", done, len(steps))
    log.info("bundle.built", path=str(result.path), sha256=result.sha256, size=result.size)
    return result


def _pack(root: Path, work: Path, out_dir: Path, epoch: int) -> tuple[Path, str]:
    """Archive `root`, then move the tarball and its .sha256 into `out_dir`."""
    name = bundle_file_name()
    staged = work / name
    with staged.open("wb") as fh:
        write_tar_gz(root, fh, epoch)
    digest = sha256_of_path(staged)
    staged_sum = work / f"{name}.sha256"
    staged_sum.write_text(f"{digest}  {name}\n", encoding="ascii")
    final = out_dir / name
    os.replace(staged, final)
    os.replace(staged_sum, out_dir / staged_sum.name)
    return final.resolve(), digest
