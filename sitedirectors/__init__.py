"""Site directors: the director loop and one backend module per computing-element type.

    python -m sitedirectors --config director.toml [--once]

The backend interface (`Backend` and its typed inputs/results) is in `sitedirectors.base`; new
backends register a factory in `sitedirectors.registry.default_registry`.
"""

from sitedirectors.base import (
    Backend,
    BackendConfigError,
    BackendContext,
    BackendError,
    BackendNotSupportedError,
    BackendStatus,
    LivePilot,
    PilotLaunch,
    PilotQueue,
    SubmitOutcome,
    SubmitRequest,
    SubmitResult,
)

__all__ = [
    "Backend",
    "BackendConfigError",
    "BackendContext",
    "BackendError",
    "BackendNotSupportedError",
    "BackendStatus",
    "LivePilot",
    "PilotLaunch",
    "PilotQueue",
    "SubmitOutcome",
    "SubmitRequest",
    "SubmitResult",
]
