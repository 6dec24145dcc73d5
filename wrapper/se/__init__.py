"""Storage element access: one plugin per protocol behind `StoragePlugin`.

Used by the wrapper (stage-in, stage-out), central's failover executor and the gb2_ds_* tools.
"""

from wrapper.se.base import (
    SEFileNotFoundError,
    SENotSupportedError,
    SEUnavailableError,
    SpaceUsage,
    StorageError,
    StoragePlugin,
    known_schemes,
    open_storage,
    register_plugin,
)
from wrapper.se.credentials import StorageCredentials

__all__ = [
    "SEFileNotFoundError",
    "SENotSupportedError",
    "SEUnavailableError",
    "SpaceUsage",
    "StorageCredentials",
    "StorageError",
    "StoragePlugin",
    "known_schemes",
    "open_storage",
    "register_plugin",
]
