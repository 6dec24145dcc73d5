"""What a pilot bundle contains and where: the names the builder, the verifier and the
director's start script (sitedirectors/start_script.py) agree on."""

from __future__ import annotations

import re

from gridpilot import __version__

MANIFEST = "MANIFEST.sha256"
INFO_FILE = "bundle.json"
LAUNCHER = "bin/gridpilot-pilot"
APP_DIR = "app"
LIB_DIR = "lib"
# Bumped when the layout changes in a way a reader must know about.
FORMAT_VERSION = 1

# The project needs Python >= 3.11 (StrEnum, TaskGroup); the launcher looks for these.
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
DEFAULT_PYTHONS = SUPPORTED_PYTHONS

# Oldest first: pip prefers the wheel matching the earliest platform given, so a node with an
# old glibc is served whenever such a wheel exists; the newer tags only admit wheels that are
# published for nothing older.
PLATFORMS = (
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_34_x86_64",
)

_PYTHON_VERSION = re.compile(r"^3\.(\d+)$")


class BundleError(Exception):
    """A bundle cannot be built or does not verify; the message names the cause."""


def python_tag(version: str) -> str:
    """The bundle's lib/ directory name for a CPython version: "3.12" -> "cp312"."""
    match = _PYTHON_VERSION.match(version.strip())
    if match is None or version.strip() not in SUPPORTED_PYTHONS:
        supported = ", ".join(SUPPORTED_PYTHONS)
        raise BundleError(f"unsupported Python version {version!r} (supported: {supported})")
    return f"cp3{match.group(1)}"


def bundle_file_name(version: str = __version__) -> str:
    return f"gridpilot-pilot-{version}.tar.gz"
