"""The rule for tests that need a real backend (sshd, SLURM, ...): outside CI a missing
backend skips the test with what to install; under CI=true it fails, because CI installs
every backend (.ci/run) and a silent skip would hide that it did not."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_backend(available: bool, what: str, install_hint: str) -> None:
    """Skip (outside CI) or fail (in CI) unless `available`."""
    if available:
        return
    message = f"{what} is not available here ({install_hint})"
    if in_ci():
        pytest.fail(f"CI must provide it: {message}", pytrace=False)
    pytest.skip(message)
