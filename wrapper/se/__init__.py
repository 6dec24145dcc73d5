"""Storage element access: one plugin per protocol behind `StoragePlugin`.

Used by the wrapper (stage-in, stage-out), central's failover executor and the gb2_ds_* tools.
"""

from wrapper.se.base import (
    SEFileNotFoundError,
    SEUnavailableError,
    StorageError,
    StoragePlugin,
    open_storage,
    register_plugin,
)

__all__ = [
    "SEFileNotFoundError",
    "SEUnavailableError",
    "StorageError",
    "StoragePlugin",
    "open_storage",
    "register_plugin",
]
