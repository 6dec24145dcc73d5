"""The `arc` backend's options, checked before anything is sent to a CE.

Options ([queues.backend_options]); `endpoint` and one credential are required:

    endpoint = "https://ce.example.org:8443/arex"  # A-REX's wsurl; /rest/1.0 is appended
    queue = ""                     # the CE's queue (default: the CE's default queue)
    cert_file = ""                 # client certificate + key (PEM, key unencrypted), or...
    key_file = ""
    token_file = ""                # ...a bearer token (re-read whenever the file changes)
    ca_file = ""                   # CAs to verify the CE (else the system's)
    ca_dir = ""                    # or a hashed CA directory (/etc/grid-security/certificates)
    walltime = 0                   # minutes; 0 = the CE's default
    runtime_environments = []      # ARC runtime environments the jobs ask for
    bundle_url = ""                # A-REX fetches the pilot bundle from here (its cache helps;
                                   # {file_name}, {sha256}: the director's bundle)
                                   # instead of one upload per job; must serve the director's
                                   # bundle byte for byte (the start script checks SHA-256)
    cache_dir = ""                 # where nodes unpack the bundle; default: the session dir
    timeout = 60.0                 # seconds for each HTTP request
    status_lag = 180.0             # seconds a new job may be unknown to the CE's status
    vanish_grace = 60.0            # seconds a job may be missing before "vanished"
    max_jobs_per_request = 100     # job descriptions / ids per request
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import msgspec

from sitedirectors.arc_parse import is_safe_name
from sitedirectors.base import BackendConfigError

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^\s\"'()]+$")


class ArcOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    endpoint: str
    queue: str = ""
    cert_file: str = ""
    key_file: str = ""
    token_file: str = ""
    ca_file: str = ""
    ca_dir: str = ""
    walltime: int = 0
    runtime_environments: list[str] = msgspec.field(default_factory=list)
    bundle_url: str = ""
    cache_dir: str = ""
    timeout: float = 60.0
    status_lag: float = 180.0
    vanish_grace: float = 60.0
    max_jobs_per_request: int = 100


def _check_endpoint(endpoint: str, where: str) -> list[str]:
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        return [f"{where}.endpoint must be an https:// URL of A-REX, got {endpoint!r}"]
    if parts.username or parts.password or parts.query or parts.fragment:
        return [f"{where}.endpoint must not carry credentials, a query or a fragment"]
    return []


def _check_files(options: ArcOptions, where: str) -> list[str]:
    problems = []
    for name in ("cert_file", "key_file", "token_file", "ca_file", "ca_dir", "cache_dir"):
        value = getattr(options, name)
        if value and not PurePosixPath(value).is_absolute():
            problems.append(f"{where}.{name} must be an absolute path, got {value!r}")
        elif value and name != "cache_dir":
            exists = Path(value).is_dir() if name == "ca_dir" else Path(value).is_file()
            if not exists:
                problems.append(f"{where}.{name}: {value} does not exist")
    if bool(options.cert_file) != bool(options.key_file):
        problems.append(f"{where}: cert_file and key_file go together")
    if options.token_file and options.cert_file:
        problems.append(f"{where}: give cert_file/key_file or token_file, not both")
    if not options.token_file and not options.cert_file:
        problems.append(f"{where}: a credential is required (cert_file + key_file, or token_file)")
    return problems


def convert_options(options: Mapping[str, Any], queue: str) -> ArcOptions:
    """`backend_options` as ArcOptions; BackendConfigError naming the field otherwise."""
    where = f"queues[{queue}].backend_options"
    try:
        converted = msgspec.convert(dict(options), ArcOptions)
    except msgspec.ValidationError as exc:
        raise BackendConfigError(f"{where}: {exc}") from exc
    converted = msgspec.structs.replace(converted, endpoint=converted.endpoint.rstrip("/"))
    problems = _check_endpoint(converted.endpoint, where) + _check_files(converted, where)
    if converted.queue and not is_safe_name(converted.queue):
        problems.append(f"{where}.queue is not a valid ARC queue name: {converted.queue!r}")
    problems += [
        f"{where}.runtime_environments: invalid name {rte!r}"
        for rte in converted.runtime_environments
        if not is_safe_name(rte)
    ]
    if converted.bundle_url and not _URL.match(converted.bundle_url):
        # Not echoed: a pre-signed URL is a credential.
        problems.append(f"{where}.bundle_url must be a URL A-REX can fetch (scheme://...)")
    for name, low in (("walltime", 0), ("status_lag", 0), ("vanish_grace", 0)):
        if getattr(converted, name) < low:
            problems.append(f"{where}.{name} must not be negative")
    if converted.timeout <= 0:
        problems.append(f"{where}.timeout must be positive")
    if converted.max_jobs_per_request < 1:
        problems.append(f"{where}.max_jobs_per_request must be at least 1")
    if problems:
        raise BackendConfigError("; ".join(problems))
    return converted
