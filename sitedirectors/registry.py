"""Backends by name, so each queue's config chooses one ("local", "ssh", "slurm", ...).

A factory receives the queue's context (its free-form `backend_options` table and the
director's work directory) and returns a ready backend; it validates the options itself and
raises `BackendConfigError` naming the bad field.

The shipped backends are registered by module path and imported when a queue first uses
one: a director for SLURM queues never loads the HTCondor bindings or Apache Libcloud, and a
site without them installed still runs its other backends.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sitedirectors.base import Backend, BackendConfigError, BackendContext

BackendFactory = Callable[[BackendContext], Backend]

# Name -> "module:factory" of every backend shipped with gridpilot.
SHIPPED: dict[str, str] = {
    "local": "sitedirectors.local:create_local_backend",
    "ssh": "sitedirectors.ssh:create_ssh_backend",
    "slurm": "sitedirectors.slurm:create_slurm_backend",
    "arc": "sitedirectors.arc:create_arc_backend",
    "htcondorce": "sitedirectors.htcondorce:create_htcondorce_backend",
    "cloud": "sitedirectors.cloud:create_cloud_backend",
}


# Backends whose libraries come with an extra of the gridpilot package.
EXTRAS = {"cloud": "cloud"}


def _lazy(target: str, extra: str = "") -> BackendFactory:
    module_name, _, attribute = target.partition(":")
    hint = f"pip install 'gridpilot[{extra}]'" if extra else "reinstall gridpilot"

    def create(context: BackendContext) -> Backend:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BackendConfigError(
                f"queues[{context.queue}].backend: cannot load {module_name} ({exc}); {hint}"
            ) from exc
        factory: BackendFactory = getattr(module, attribute)
        return factory(context)

    return create


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
    for name, target in SHIPPED.items():
        registry.register(name, _lazy(target, EXTRAS.get(name, "")))
    return registry
