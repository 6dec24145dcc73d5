from __future__ import annotations

import platform
from pathlib import Path

import pytest

from pilot.node import (
    NodeCheckError,
    NodeLimits,
    check_node,
    detect_platform,
    parse_os_release,
    platform_name,
    usable_cores,
)

DEBIAN = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"""

ROCKY = """NAME="Rocky Linux"
VERSION="9.3 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.3"
"""

ALMA = """ID="almalinux"
ID_LIKE="rhel centos fedora"
VERSION_ID="8.9"
"""

UBUNTU = """# comment
ID=ubuntu
ID_LIKE=debian
VERSION_ID="22.04"
"""


def test_parse_os_release_strips_quotes_and_comments() -> None:
    fields = parse_os_release(UBUNTU)
    assert fields == {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "22.04"}


@pytest.mark.parametrize(
    ("text", "machine", "expected"),
    [
        (DEBIAN, "x86_64", "x86_64-debian12"),
        (ROCKY, "x86_64", "x86_64-el9"),
        (ALMA, "x86_64", "x86_64-el8"),
        (UBUNTU, "aarch64", "aarch64-ubuntu22"),
    ],
)
def test_platform_names(text: str, machine: str, expected: str) -> None:
    assert platform_name(parse_os_release(text), machine) == expected


def test_detect_platform_on_this_node(tmp_path: Path) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text(DEBIAN)
    assert detect_platform(os_release) == f"{platform.machine()}-debian12"
    # The real file of this node gives a name of the same shape.
    assert detect_platform().startswith(platform.machine() + "-")


def test_check_node_measures_the_node(tmp_path: Path) -> None:
    work = tmp_path / "work"
    info = check_node(work, NodeLimits(min_disk_free_mb=1, min_memory_mb=1))
    assert work.is_dir()
    assert info.cores == usable_cores() >= 1
    assert info.memory_bytes > 0
    assert info.disk_free_bytes > 0
    assert info.load_average >= 0
    assert info.python_version == platform.python_version()
    assert info.hostname


def test_check_node_fails_on_too_little_disk(tmp_path: Path) -> None:
    with pytest.raises(NodeCheckError, match="MiB free in"):
        check_node(tmp_path, NodeLimits(min_disk_free_mb=10**12))


def test_check_node_fails_on_too_little_memory(tmp_path: Path) -> None:
    with pytest.raises(NodeCheckError, match="MiB memory"):
        check_node(tmp_path, NodeLimits(min_disk_free_mb=1, min_memory_mb=10**12))


def test_check_node_lists_every_failure(tmp_path: Path) -> None:
    limits = NodeLimits(min_disk_free_mb=10**12, min_memory_mb=10**12, max_load_per_core=-1.0)
    with pytest.raises(NodeCheckError) as caught:
        check_node(tmp_path, limits)
    message = str(caught.value)
    assert "free in" in message
    assert "memory" in message
    assert "exceeds" in message


def test_check_node_fails_on_unwritable_work_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(NodeCheckError, match="not writable"):
        check_node(blocker / "work", NodeLimits(min_disk_free_mb=1))
