"""A stand-in basf2 software release on disk, laid out like a real one for the wrapper.

    <releases_dir>/<release>/setup.sh    puts <release>/bin first on PATH
    <releases_dir>/<release>/bin/basf2   runs gridpilot.demo.basf2_standin

The wrapper's software setup template for such releases is
`source <releases_dir>/{release}/setup.sh` (see `setup_template`).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import gridpilot

_RELEASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def setup_template(releases_dir: Path) -> str:
    """The wrapper's --software-setup value for releases made by `create_release`."""
    return f"source {shlex.quote(str(releases_dir.resolve()))}/{{release}}/setup.sh"


def create_release(releases_dir: Path, release: str) -> Path:
    """Write the stand-in release `release` under `releases_dir`; return its directory.

    Idempotent: an existing release of that name is rewritten in place.
    """
    if not _RELEASE_NAME.match(release):
        raise ValueError(f"invalid release name {release!r}")
    root = (releases_dir / release).resolve()
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    # The package may not be installed where the payload runs; point Python at this checkout.
    package_root = Path(gridpilot.__file__).resolve().parent.parent
    basf2 = bin_dir / "basf2"
    basf2.write_text(
        "#!/bin/sh\n"
        f"# Stand-in for basf2 of {release}: not the real Belle II software.\n"
        f"PYTHONPATH={shlex.quote(str(package_root))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.quote(sys.executable)} -m gridpilot.demo.basf2_standin "$@"\n'
    )
    basf2.chmod(0o755)
    setup = root / "setup.sh"
    setup.write_text(
        f"# Environment of the stand-in release {release} (gridpilot demo).\n"
        f"export BELLE2_RELEASE={shlex.quote(release)}\n"
        f"export BELLE2_RELEASE_DIR={shlex.quote(str(root))}\n"
        f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"\n'
    )
    return root
