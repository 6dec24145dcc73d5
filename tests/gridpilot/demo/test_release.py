from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gridpilot.demo.release import create_release, setup_template


def test_release_provides_basf2_through_setup(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    root = create_release(releases, "release-08-00-00")
    assert root == (releases / "release-08-00-00").resolve()
    assert (root / "bin" / "basf2").stat().st_mode & 0o111
    work = tmp_path / "work"
    work.mkdir()
    (work / "steer.py").write_text("# steering\n")
    setup = setup_template(releases).replace("{release}", "release-08-00-00")
    # Run from an unrelated directory with a clean PATH, as a payload would.
    proc = subprocess.run(
        ["bash", "-c", f'{setup} && exec "$@"', "bash", "basf2", "steer.py", "-n", "2"],
        cwd=work,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[INFO] Processed event 2" in proc.stdout
    assert (work / "output.root").exists()


def test_create_release_is_idempotent(tmp_path: Path) -> None:
    first = create_release(tmp_path, "r1")
    assert create_release(tmp_path, "r1") == first


def test_invalid_release_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid release"):
        create_release(tmp_path, "../escape")
