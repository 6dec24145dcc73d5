"""A small TOML writer for test configurations (tables, arrays of tables, scalars, lists)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes.
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _table(path: list[str], table: Mapping[str, Any], lines: list[str]) -> None:
    scalars = {
        k: v for k, v in table.items() if not isinstance(v, Mapping) and not _is_table_array(v)
    }
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in table.items():
        if isinstance(v, Mapping):
            sub = [*path, _key(k)]
            lines.extend(["", f"[{'.'.join(sub)}]"])
            _table(sub, v, lines)
        elif _is_table_array(v):
            sub = [*path, _key(k)]
            for item in v:
                lines.extend(["", f"[[{'.'.join(sub)}]]"])
                _table(sub, item, lines)


def dumps(data: Mapping[str, Any]) -> str:
    lines: list[str] = []
    _table([], data, lines)
    return "\n".join(lines).lstrip("\n") + "\n"
