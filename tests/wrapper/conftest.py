"""Fixtures shared by the wrapper tests: a stand-in basf2 release on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.demo.release import create_release, setup_template
from tests.wrapper.helpers import RELEASE


@pytest.fixture
def releases_dir(tmp_path: Path) -> Path:
    path = tmp_path / "releases"
    create_release(path, RELEASE)
    return path


@pytest.fixture
def software_setup(releases_dir: Path) -> str:
    return setup_template(releases_dir)
