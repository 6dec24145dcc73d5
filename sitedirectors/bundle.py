"""The pilot bundle as the director ships it: a file and its SHA-256, computed once at start.

Backends copy the file to worker nodes under a name made from its checksum
(`file_name`), so a node keeps one copy per bundle version and a changed bundle is never
mistaken for the cached one; the start script checks the checksum again before running it.
Bundles are built by `gridpilot admin bundle build` (gridpilot/bundle/).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


class BundleError(ValueError):
    """The configured pilot bundle cannot be used; the message names the file."""


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class PilotBundle:
    path: Path
    sha256: str

    @property
    def file_name(self) -> str:
        return f"gridpilot-pilot-{self.sha256}.tar.gz"

    def url_from(self, template: str) -> str:
        """Where worker nodes fetch this bundle: a backend's `bundle_url` with `{file_name}`
        and `{sha256}` filled in (publish each bundle under its own name, and a node can
        never fetch an older one by mistake)."""
        return template.replace("{file_name}", self.file_name).replace("{sha256}", self.sha256)

    @classmethod
    def load(cls, path: Path) -> PilotBundle:
        try:
            return cls(path.resolve(), sha256_of_file(path))
        except FileNotFoundError as exc:
            raise BundleError(f"pilot bundle {path} does not exist") from exc
        except OSError as exc:
            raise BundleError(f"pilot bundle {path} cannot be read: {exc}") from exc
