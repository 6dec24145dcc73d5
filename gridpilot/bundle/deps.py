"""What the pilot needs at run time, found by importing it.

A probe in a fresh interpreter imports every module of `pilot` and `wrapper` and reports
what that loaded. Each loaded file is traced to the installed distribution that owns it:
the project's own packages are copied into the bundle's app/ (from wherever they are
imported, so editable and normal installs both work), third-party distributions are
installed into lib/cpXY/ pinned to the versions the builder has, so the pilots run what
central was tested with.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from gridpilot.bundle.layout import BundleError

# The entry points; everything they import comes along.
ENTRY_PACKAGES = ("pilot", "wrapper")
# Copied whole although the pilot imports only part of it: jobs run the demo's stand-in
# basf2 (gridpilot/demo) as their payload, from the bundle.
WHOLE_PACKAGES = ("gridpilot",)
# The pilot's declared run-time dependencies; the probe adds whatever they pull in.
DECLARED = (
    "grpcio",
    "protobuf",
    "msgspec",
    "psutil",
    "cryptography",
    "PyJWT",
    "uvloop",
    # The wrapper's storage plugins for root:// and davs:// SEs.
    "xrootd",
    "httpx",
)
# `import grpc` imports these when they happen to be installed, only to alias them as
# grpc.tools/health/reflection; the pilot uses none of them (grpcio-tools alone is a
# compiler and setuptools).
OPTIONAL = frozenset({"grpcio-tools", "grpcio-health-checking", "grpcio-reflection"})

_PROBE_TIMEOUT = 120.0
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

_PROBE = """
import importlib, json, pkgutil, sys
before = set(sys.modules)
for root in sys.argv[1:]:
    package = importlib.import_module(root)
    for info in pkgutil.walk_packages(package.__path__, root + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            importlib.import_module(info.name)
loaded = {}
for name in sorted(set(sys.modules) - before):
    module = sys.modules[name]
    loaded[name] = {
        "file": getattr(module, "__file__", None),
        "path": list(getattr(module, "__path__", None) or []),
    }
json.dump(loaded, sys.stdout)
"""


def normalize(name: str) -> str:
    """PEP 503 name, for comparing distribution names."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LoadedModule:
    name: str
    file: str | None
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuntimeNeeds:
    # top-level package name -> where it is imported from (a package directory or a module)
    app: dict[str, Path]
    # distribution -> version: installed in lib/cpXY as `name==version`
    requirements: dict[str, str]
    # their dependencies as installed here: pip constraints, so nothing floats
    constraints: dict[str, str] = field(default_factory=dict)


def probe_imports(roots: tuple[str, ...] = ENTRY_PACKAGES) -> list[LoadedModule]:
    """Import `roots` and all their submodules in a fresh interpreter (this one's path)."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, *roots],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BundleError(f"importing {', '.join(roots)} took over {_PROBE_TIMEOUT:.0f} s") from exc
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-5:])
        raise BundleError(f"importing {', '.join(roots)} failed: {tail}")
    rows: dict[str, dict[str, object]] = json.loads(result.stdout)
    return [
        LoadedModule(name, _str_or_none(row.get("file")), tuple(_strings(row.get("path"))))
        for name, row in rows.items()
    ]


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _is_stdlib(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in sys.stdlib_module_names


def _file_owners(top_levels: set[str]) -> dict[Path, metadata.Distribution]:
    """Resolved file path -> the installed distribution whose RECORD lists it."""
    candidates = metadata.packages_distributions()
    names = {normalize(d) for top in top_levels for d in candidates.get(top, [])}
    owners: dict[Path, metadata.Distribution] = {}
    for dist in metadata.distributions():
        if normalize(dist.metadata["Name"] or "") not in names:
            continue
        for entry in dist.files or []:
            owners.setdefault(Path(str(dist.locate_file(entry))).resolve(), dist)
    return owners


def classify(loaded: list[LoadedModule]) -> RuntimeNeeds:
    """Split what the probe loaded into the project's own packages and pinned distributions."""
    files = {m.name: Path(m.file).resolve() for m in loaded if m.file and not _is_stdlib(m.name)}
    owners = _file_owners({name.split(".")[0] for name in files})
    by_name = {m.name: m for m in loaded}
    entry = files.get(f"{ENTRY_PACKAGES[0]}.__init__") or files.get(ENTRY_PACKAGES[0])
    if entry is None:
        raise BundleError(f"the probe did not load the {ENTRY_PACKAGES[0]!r} package")
    own_dist = owners.get(entry)
    # Without an owner (a source checkout), the project's modules are those beside `pilot`.
    own_root = entry.parent.parent
    app: dict[str, Path] = {}
    third_party: dict[str, metadata.Distribution] = {}
    for name, path in sorted(files.items()):
        dist = owners.get(path)
        top = name.split(".", maxsplit=1)[0]
        if _is_own(path, dist, own_root, own_dist):
            app.setdefault(top, _location(by_name.get(top), own_root / top))
        elif dist is not None:
            third_party[normalize(dist.metadata["Name"])] = dist
        else:
            raise BundleError(f"module {name} ({path}) belongs to no installed distribution")
    for top in WHOLE_PACKAGES:
        if top not in app:
            app[top] = _location(by_name.get(top), own_root / top)
    requirements = {d.metadata["Name"]: d.version for d in third_party.values()}
    for declared in map(_installed, DECLARED):
        requirements.setdefault(declared.metadata["Name"], declared.version)
    requirements = {
        name: version for name, version in requirements.items() if normalize(name) not in OPTIONAL
    }
    return RuntimeNeeds(app, dict(sorted(requirements.items())), _closure(requirements))


def _is_own(
    path: Path,
    dist: metadata.Distribution | None,
    own_root: Path,
    own_dist: metadata.Distribution | None,
) -> bool:
    if dist is None:
        return path.is_relative_to(own_root)
    return own_dist is not None and normalize(dist.metadata["Name"]) == normalize(
        own_dist.metadata["Name"]
    )


def _location(module: LoadedModule | None, fallback: Path) -> Path:
    if module is not None and module.path:
        return Path(module.path[0]).resolve()
    if module is not None and module.file:
        return Path(module.file).resolve()
    if fallback.is_dir():
        return fallback
    raise BundleError(f"cannot find the {fallback.name!r} package to copy into the bundle")


def _installed(name: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError as exc:
        raise BundleError(
            f"{name} is not installed where the bundle is built; install gridpilot with its "
            "dependencies first (the bundle pins the versions found here)"
        ) from exc


def _closure(requirements: dict[str, str]) -> dict[str, str]:
    """Every installed dependency of `requirements`, recursively, at its installed version.

    Extras are not followed (none is requested). Environment markers are: a dependency
    only some Python versions need becomes a constraint, which pip applies only if needed.
    """
    pins: dict[str, str] = {}
    todo = list(requirements)
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"]
        if key in pins:
            continue
        pins[key] = dist.version
        for line in dist.requires or []:
            spec, _, marker = line.partition(";")
            match = _NAME.match(spec)
            if match is None or "extra" in marker:
                continue
            todo.append(match.group(1))
    return dict(sorted(pins.items()))


def runtime_needs() -> RuntimeNeeds:
    """Probe this interpreter's `pilot` and `wrapper` and say what the bundle must hold."""
    return classify(probe_imports())
