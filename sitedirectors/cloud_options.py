"""The `cloud` backend's options ([queues.backend_options]) and its credentials file.

Secrets never sit in the director's configuration: `credentials_file` names a small TOML (or,
by its `.json` suffix, JSON) file, mode 0600 or stricter, with the provider's credentials:

    # EC2                                  # OpenStack (Keystone)
    key_id = "AKIA..."                     username = "gridpilot"
    secret = "..."                         password = "..."
                                           tenant = "belle"      # project name
                                           domain = "Default"    # Keystone v3 only
"""

from __future__ import annotations

import json
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from sitedirectors.base import BackendConfigError
from sitedirectors.cloud_parse import TAG_PREFIX


class CloudOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    provider: Literal["ec2", "openstack"]
    credentials_file: str
    image: str
    flavor: str
    # EC2: the API's URL ("" = the region's AWS endpoint); OpenStack: Keystone's auth URL.
    endpoint: str = ""
    # EC2 region ("" = us-east-1); OpenStack: the compute service's region in the catalog.
    region: str = ""
    # OpenStack only: Keystone's auth flavour and the compute service's catalog name.
    auth_version: str = "3.x_password"
    service_name: str = ""
    key_name: str = ""
    # EC2 subnet id / OpenStack network id.
    network: str = ""
    security_groups: list[str] = msgspec.field(default_factory=list)
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    # The name this director's VMs are tagged with; "" = the director's name.
    director: str = ""
    max_vms: int = 10
    max_cores: int = 0
    boot_timeout: float = 900.0
    max_lifetime: float = 172800.0
    idle_limit: float = 1800.0
    vanish_grace: float = 120.0
    backoff: float = 60.0
    backoff_max: float = 1800.0
    bundle_url: str = ""
    vm_dir: str = "/var/lib/gridpilot"
    pilot_user: str = "gridpilot"
    block_metadata: bool = True
    timeout: float = 60.0
    state_dir: str = ""


class Credentials(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    key_id: str = ""
    secret: str = msgspec.field(default="")
    username: str = ""
    password: str = ""
    tenant: str = ""
    domain: str = "Default"

    def __repr__(self) -> str:
        # Never print a secret, wherever a Credentials ends up.
        return f"Credentials(key_id={self.key_id!r}, username={self.username!r})"


_POSITIVE = ("boot_timeout", "max_lifetime", "idle_limit", "backoff", "backoff_max", "timeout")


def convert_options(options: Mapping[str, Any], queue: str) -> CloudOptions:
    """`backend_options` as CloudOptions; BackendConfigError naming the field otherwise."""
    where = f"queues[{queue}].backend_options"
    try:
        converted = msgspec.convert(dict(options), CloudOptions)
    except msgspec.ValidationError as exc:
        raise BackendConfigError(f"{where}: {exc}") from exc
    problems = []
    for field in ("credentials_file", "image", "flavor"):
        if not getattr(converted, field).strip():
            problems.append(f"{where}.{field} must not be empty")
    if converted.provider == "openstack" and not converted.endpoint:
        problems.append(f"{where}.endpoint must be Keystone's auth URL for provider openstack")
    if converted.endpoint and urlsplit(converted.endpoint).scheme not in ("http", "https"):
        problems.append(f"{where}.endpoint must be an http(s) URL, got {converted.endpoint!r}")
    if converted.max_vms < 1:
        problems.append(f"{where}.max_vms must be at least 1")
    if converted.max_cores < 0:
        problems.append(f"{where}.max_cores must not be negative (0 = no cap)")
    for field in _POSITIVE:
        if getattr(converted, field) <= 0:
            problems.append(f"{where}.{field} must be positive")
    if converted.vanish_grace < 0:
        problems.append(f"{where}.vanish_grace must not be negative")
    if converted.bundle_url and urlsplit(converted.bundle_url).scheme not in ("https", "file"):
        problems.append(f"{where}.bundle_url must be an https:// (or file://) URL")
    if not PurePosixPath(converted.vm_dir).is_absolute():
        problems.append(f"{where}.vm_dir must be an absolute path, got {converted.vm_dir!r}")
    if converted.state_dir and not Path(converted.state_dir).is_absolute():
        problems.append(f"{where}.state_dir must be an absolute path")
    if not converted.pilot_user or not converted.pilot_user.replace("-", "_").isidentifier():
        problems.append(f"{where}.pilot_user must be a user name, got {converted.pilot_user!r}")
    for key in converted.tags:
        if key.startswith(TAG_PREFIX):
            problems.append(f"{where}.tags: {key!r} uses the reserved prefix {TAG_PREFIX!r}")
    if problems:
        raise BackendConfigError("; ".join(problems))
    return converted


def load_credentials(options: CloudOptions, queue: str) -> Credentials:
    """Read and check the credentials file (mode 0600 or stricter, the provider's fields)."""
    where = f"queues[{queue}].backend_options.credentials_file"
    path = Path(options.credentials_file)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BackendConfigError(f"{where}: cannot read {path}: {exc}") from exc
    if mode & 0o077:
        raise BackendConfigError(
            f"{where}: {path} is readable by others (mode {mode:04o}); it must be 0600"
        )
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        credentials = msgspec.convert(data, Credentials)
    except (ValueError, msgspec.ValidationError) as exc:
        # ValueError covers JSON and TOML syntax errors; neither quotes a secret's value.
        raise BackendConfigError(f"{where}: {path}: {exc}") from exc
    needed = (
        ("key_id", "secret") if options.provider == "ec2" else ("username", "password", "tenant")
    )
    missing = [name for name in needed if not getattr(credentials, name)]
    if missing:
        raise BackendConfigError(
            f"{where}: {path} lacks {', '.join(missing)} (needed for provider {options.provider})"
        )
    return credentials
