"""Fixtures shared by every test directory."""

from __future__ import annotations

import pytest

from sitedirectors.bundle import PilotBundle
from tests.support.bundle import as_pilot_bundle, build_test_bundle


@pytest.fixture(scope="session")
def pilot_bundle(tmp_path_factory: pytest.TempPathFactory) -> PilotBundle:
    """A real pilot bundle (gridpilot admin bundle build's code path) for the running
    interpreter's Python, built once per test session (~10 s; pip needs the package index
    or its cache)."""
    return as_pilot_bundle(build_test_bundle(tmp_path_factory.mktemp("pilot-bundle")))
