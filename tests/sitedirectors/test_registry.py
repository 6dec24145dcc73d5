from __future__ import annotations

from pathlib import Path

import pytest

import sitedirectors
from sitedirectors import registry as registry_module
from sitedirectors.base import (
    Backend,
    BackendConfigError,
    BackendContext,
    BackendNotSupportedError,
)
from sitedirectors.local import LocalBackend
from sitedirectors.registry import BackendRegistry, default_registry


def test_default_registry_has_local(tmp_path: Path) -> None:
    registry = default_registry()
    assert "local" in registry
    backend = registry.create("local", BackendContext("q", tmp_path))
    assert isinstance(backend, LocalBackend)
    assert backend.name == "local"


def test_unknown_backend_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match=r"unknown backend 'condor'.*local"):
        default_registry().create("condor", BackendContext("q", tmp_path))


def test_no_silent_overwrite() -> None:
    registry = BackendRegistry()
    registry.register("local", lambda ctx: LocalBackend(ctx.work_dir))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("local", lambda ctx: LocalBackend(ctx.work_dir))
    registry.register("local", lambda ctx: LocalBackend(ctx.work_dir), replace=True)
    with pytest.raises(ValueError, match="empty"):
        registry.register("", lambda ctx: LocalBackend(ctx.work_dir))
    assert registry.names() == ["local"]


def test_optional_operations_say_they_are_missing() -> None:
    class StatusOnly(Backend):
        name = "status-only"

        def submit(self, request: sitedirectors.SubmitRequest) -> list[sitedirectors.SubmitResult]:
            return []

        def status(self, references: object) -> dict[str, sitedirectors.BackendStatus]:
            return {}

        def cancel(self, references: object) -> None:
            return None

    backend = StatusOnly()
    with pytest.raises(BackendNotSupportedError, match="status-only backend: fetch_output"):
        backend.fetch_output("ref")
    with pytest.raises(BackendNotSupportedError, match="cleanup"):
        backend.cleanup(["ref"])


def test_public_surface() -> None:
    for name in sitedirectors.__all__:
        assert hasattr(sitedirectors, name), name


def test_default_registry_ships_every_backend() -> None:
    assert default_registry().names() == ["arc", "cloud", "htcondorce", "local", "slurm", "ssh"]


def test_a_backend_whose_module_cannot_load_is_a_config_error(tmp_path: Path) -> None:
    registry = BackendRegistry()
    registry.register("tape", registry_module._lazy("sitedirectors.no_such_module:create"))
    with pytest.raises(BackendConfigError, match=r"queues\[q\].backend: cannot load"):
        registry.create("tape", BackendContext("q", tmp_path))
