"""Backends by name, so each queue's config chooses one ("local", "ssh", "slurm", ...).

A factory receives the queue's context (its free-form `backend_options` table and the
director's work directory) and returns a ready backend; it validates the options itself and
raises `BackendConfigError` naming the bad field.
"""

from __future__ import annotations

from collections.abc import Callable

from sitedirectors.base import Backend, BackendContext
from sitedirectors.local import create_local_backend
from sitedirectors.slurm import create_slurm_backend
from sitedirectors.ssh import create_ssh_backend

BackendFactory = Callable[[BackendContext], Backend]


class BackendRegistry:
    """Maps backend names to factories; registering a name twice is refused."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {}

    def register(self, name: str, factory: BackendFactory, *, replace: bool = False) -> None:
        if not name:
            raise ValueError("backend name must not be empty")
        if name in self._factories and not replace:
            raise ValueError(f"backend {name!r} is already registered (pass replace=True)")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def create(self, name: str, context: BackendContext) -> Backend:
        factory = self._factories.get(name)
        if factory is None:
            known = ", ".join(self.names()) or "none"
            raise KeyError(f"unknown backend {name!r} (known: {known})")
        return factory(context)


def default_registry() -> BackendRegistry:
    """A registry with every backend shipped with gridpilot."""
    registry = BackendRegistry()
    registry.register("local", create_local_backend)
    registry.register("ssh", create_ssh_backend)
    registry.register("slurm", create_slurm_backend)
    return registry
