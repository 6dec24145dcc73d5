"""The worker-node start script with relative paths: a batch job learns its scratch directory
only when it runs (ARC's session directory, HTCondor's execute directory)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sitedirectors.start_script import BundleOnNode, StartScript, render_start_script
from tests.support.bundle import echo_bundle


def test_relative_paths_are_taken_from_where_the_script_starts(tmp_path: Path) -> None:
    bundle = echo_bundle(tmp_path / "built")
    scratch = tmp_path / "scratch dir"  # a space: every path stays one word
    scratch.mkdir()
    shutil.copy(bundle.path, scratch / "bundle.tgz")
    spec = StartScript(
        pilot_id="p-1",
        work_dir="./work",
        arguments=("--site", "LCG.X"),
        token_file="registration.token",
        ca_file="ca.pem",
        bundle=BundleOnNode("bundle.tgz", bundle.sha256, "cache"),
    )
    (scratch / "start.sh").write_text(render_start_script(spec))
    done = subprocess.run(
        ["/bin/sh", "start.sh"],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    root = scratch.resolve()
    assert done.stdout.strip() == (
        f"launcher from {root}/cache/{bundle.sha256}: --site LCG.X "
        f"--token-file {root}/registration.token --ca {root}/ca.pem --work-dir {root}/work"
    )
    assert (root / "work").is_dir()


def test_absolute_paths_stay_as_they_are() -> None:
    spec = StartScript(pilot_id="p-2", work_dir="/w", command=("/bin/true",), ca_file="/ca.pem")
    script = render_start_script(spec)
    assert "--ca /ca.pem --work-dir /w" in script
    assert '"$start_dir"' not in script.split("start_dir=", 1)[1].split("\n", 1)[1]


def test_the_start_directory_itself_is_named_plainly() -> None:
    """'.' and './' are the start directory, without a trailing '/.' in the pilot's paths."""
    for work_dir in (".", "./", ""):
        spec = StartScript(pilot_id="p-3", work_dir=work_dir, command=("/bin/true",))
        assert render_start_script(spec).endswith('exec /bin/true --work-dir "$start_dir"\n')
