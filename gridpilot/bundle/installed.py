"""What pip put into one lib/cpXY directory: distribution versions and the oldest glibc the
set of wheels runs on (the newest of each wheel's oldest manylinux tag)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

# Legacy manylinux names and the glibc each one stands for (PEP 600).
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_PEP600 = re.compile(r"^manylinux_(\d+)_(\d+)_")


@dataclass(frozen=True)
class InstalledSet:
    versions: dict[str, str]
    # "2.17": the node needs at least this glibc; "" when every wheel is pure Python.
    min_glibc: str


def platform_glibc(platform: str) -> tuple[int, int] | None:
    """The glibc a manylinux platform tag needs; None for other tags (e.g. "any")."""
    match = _PEP600.match(platform)
    if match is not None:
        return int(match.group(1)), int(match.group(2))
    for legacy, glibc in _LEGACY.items():
        if platform.startswith(legacy + "_"):
            return glibc
    return None


def wheel_glibc(tags: list[str]) -> tuple[int, int] | None:
    """The oldest glibc any of a wheel's tags accepts (a wheel runs if one tag fits)."""
    needs = [g for tag in tags if (g := platform_glibc(tag.rsplit("-", 1)[-1])) is not None]
    return min(needs) if needs else None


def read_installed(target: Path) -> InstalledSet:
    parser = HeaderParser()
    versions: dict[str, str] = {}
    glibc: list[tuple[int, int]] = []
    for info_dir in sorted(target.glob("*.dist-info")):
        meta = parser.parsestr((info_dir / "METADATA").read_text(encoding="utf-8"))
        versions[meta["Name"]] = meta["Version"]
        wheel_file = info_dir / "WHEEL"
        if wheel_file.is_file():
            wheel = parser.parsestr(wheel_file.read_text(encoding="utf-8"))
            needed = wheel_glibc(wheel.get_all("Tag") or [])
            if needed is not None:
                glibc.append(needed)
    newest = max(glibc) if glibc else None
    return InstalledSet(
        versions=dict(sorted(versions.items(), key=lambda kv: kv[0].lower())),
        min_glibc=f"{newest[0]}.{newest[1]}" if newest else "",
    )
