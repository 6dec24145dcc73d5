"""The ssh backend's options ([queues.backend_options], documented in sitedirectors/ssh.py):
validated with the field named on errors (`queues[<q>].backend_options.<field>`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from sitedirectors.base import BackendConfigError
from sitedirectors.ssh_session import SshSession, SshTarget


class SshOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str
    user: str
    key_file: str
    known_hosts: str
    port: int = 22
    work_dir: str = "gridpilot"
    mode: Literal["direct", "slurm"] = "direct"
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    kill_grace: float = 10.0
    cleanup_after: float = 7.0


def convert_options(options: Mapping[str, Any], queue: str) -> tuple[SshOptions, dict[str, Any]]:
    """The SSH options, and the rest of the table (the SLURM options, in slurm mode).
    BackendConfigError names the field: `queues[<q>].backend_options.<field>`."""
    where = f"queues[{queue}].backend_options"
    own = {k: v for k, v in options.items() if k in SshOptions.__struct_fields__}
    rest = {k: v for k, v in options.items() if k not in SshOptions.__struct_fields__}
    if own.get("mode", "direct") != "slurm":
        # Unknown keys are then errors: msgspec reports them, naming the key.
        own, rest = dict(options), {}
    try:
        parsed = msgspec.convert(own, SshOptions)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`$.", f"`{where}.").replace("`$`", f"`{where}`")
        raise BackendConfigError(f"{where}: {message}") from exc
    problems: list[str] = []
    for name in ("host", "user", "key_file", "known_hosts", "work_dir"):
        if not getattr(parsed, name).strip():
            problems.append(f"{where}.{name} must not be empty")
    if not 0 < parsed.port < 65536:
        problems.append(f"{where}.port must be between 1 and 65535")
    for name in ("connect_timeout", "command_timeout", "cleanup_after"):
        if getattr(parsed, name) <= 0:
            problems.append(f"{where}.{name} must be positive")
    if parsed.kill_grace < 0:
        problems.append(f"{where}.kill_grace must not be negative")
    for name in ("key_file", "known_hosts"):
        path = getattr(parsed, name)
        if path.strip() and not Path(path).is_file():
            problems.append(f"{where}.{name}: {path} does not exist")
    if problems:
        raise BackendConfigError("; ".join(problems))
    return parsed, rest


def session_for(options: SshOptions) -> SshSession:
    return SshSession(
        SshTarget(
            host=options.host,
            port=options.port,
            user=options.user,
            key_file=Path(options.key_file),
            known_hosts=Path(options.known_hosts),
            connect_timeout=options.connect_timeout,
        )
    )
