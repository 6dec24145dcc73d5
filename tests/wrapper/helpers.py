"""Helpers for the wrapper tests (subprocess environment, the stand-in release name)."""

from __future__ import annotations

import os
from pathlib import Path

import gridpilot

RELEASE = "release-08-00-00"
# The checkout holding the packages, for subprocesses when the project is not installed.
CODE_ROOT = str(Path(gridpilot.__file__).resolve().parent.parent)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (CODE_ROOT, env.get("PYTHONPATH")) if p)
    return env
