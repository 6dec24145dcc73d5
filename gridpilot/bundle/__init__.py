"""The pilot bundle: everything a worker node needs to run the pilot, in one tarball.

Built by `gridpilot admin bundle build` (build.py), checked by `verify_bundle` (verify.py),
shipped and unpacked by the site directors (sitedirectors/bundle.py, start_script.py).
The layout and the checks are described in docs/pilot-bundle.md.
"""

from gridpilot.bundle.build import BuildOptions, BuiltBundle, build_bundle, build_time_from_env
from gridpilot.bundle.launcher import LAUNCHER_SCRIPT
from gridpilot.bundle.layout import (
    DEFAULT_PYTHONS,
    LAUNCHER,
    MANIFEST,
    SUPPORTED_PYTHONS,
    BundleError,
    bundle_file_name,
    python_tag,
)
from gridpilot.bundle.verify import BundleInfo, verify_bundle

__all__ = [
    "DEFAULT_PYTHONS",
    "LAUNCHER",
    "LAUNCHER_SCRIPT",
    "MANIFEST",
    "SUPPORTED_PYTHONS",
    "BuildOptions",
    "BuiltBundle",
    "BundleError",
    "BundleInfo",
    "build_bundle",
    "build_time_from_env",
    "bundle_file_name",
    "python_tag",
    "verify_bundle",
]
