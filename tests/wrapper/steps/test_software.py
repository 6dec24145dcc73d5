from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from wrapper.steps.software import DEFAULT_SETUP, SetupError, payload_command, setup_snippet


def test_setup_snippet_from_template() -> None:
    template = "source /sw/{release}/setup.sh"
    assert setup_snippet(template, "release-08-00-00") == "source /sw/release-08-00-00/setup.sh"
    assert setup_snippet(None, "anything") == DEFAULT_SETUP
    assert setup_snippet("source /sw/common.sh", "x y") == "source /sw/common.sh"


@pytest.mark.parametrize("release", ["", "rel; rm -rf /", "$(id)", "../x", "a b"])
def test_bad_release_names_refused(release: str) -> None:
    with pytest.raises(SetupError, match="invalid release"):
        setup_snippet("source /sw/{release}/setup.sh", release)


def test_command_is_an_argument_list() -> None:
    cmd = payload_command("true", "steer.py", ["a.root", "b.root"], "-n 10 --tag 'x y'")
    assert cmd == [
        "bash",
        "-c",
        'true && exec "$@"',
        "bash",
        "basf2",
        "steer.py",
        "-i",
        "a.root",
        "-i",
        "b.root",
        "-n",
        "10",
        "--tag",
        "x y",
    ]


def test_user_input_never_reaches_the_shell_as_code(tmp_path: Path) -> None:
    # A fake basf2 that prints its arguments, one per line.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    basf2 = bin_dir / "basf2"
    basf2.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    basf2.chmod(0o755)
    marker = tmp_path / "pwned"
    setup = f"export PATH={bin_dir}:$PATH"
    cmd = payload_command(setup, f"s.py; touch {marker}", [], f"'$(touch {marker})' `id`")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.splitlines() == [f"s.py; touch {marker}", f"$(touch {marker})", "`id`"]
    assert not marker.exists()


def test_bad_options_and_missing_steering() -> None:
    with pytest.raises(SetupError, match="cannot parse"):
        payload_command("true", "s.py", [], "-n 'unbalanced")
    with pytest.raises(SetupError, match="no steering"):
        payload_command("true", "", [], "")
