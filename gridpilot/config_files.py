"""Reading a TOML configuration file into a typed, validated config (central, site directors).

Every failure is a ConfigError whose message names the file and the problem, so commands can
print it as one line and exit 2.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message names the problem."""


def convert_config(data: dict[str, Any], config_type: type[T]) -> T:
    """The parsed TOML as `config_type`; unknown fields and wrong types name their path."""
    try:
        return msgspec.convert(data, config_type)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc


def load_config_file(path: Path, from_dict: Callable[[dict[str, Any]], T]) -> T:
    """Read `path` as TOML and build the config with `from_dict` (which validates)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
