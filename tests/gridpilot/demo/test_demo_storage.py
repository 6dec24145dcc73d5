"""The demo on real XRootD storage elements (`gridpilot demo --se xrootd`), and the demo's two
kinds of storage doing what the outage needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from gridpilot.demo.storage import DirectoryStorage, create_storage
from tests.support.xrootd import require_xrootd
from wrapper.se import SEUnavailableError, open_storage

REPO_ROOT = Path(__file__).resolve().parents[3]
LFN = "/belle/demo/f.root"


def _round_trip(url: str, tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"events")
    storage = open_storage(url)
    try:
        storage.upload(local, LFN)
        assert storage.stat(LFN) == 6
    finally:
        storage.close()


@pytest.mark.parametrize("kind", ["directories", "xrootd"])
def test_storage_goes_down_and_comes_back_with_its_files(kind: str, tmp_path: Path) -> None:
    if kind == "xrootd":
        require_xrootd()
    storage = create_storage(kind, tmp_path / "se", ["KEK-SE", "DESY-SE"])
    try:
        url = storage.url("DESY-SE")
        _round_trip(url, tmp_path)
        storage.take_offline("DESY-SE")
        assert storage.is_offline("DESY-SE")
        assert not storage.is_offline("KEK-SE")
        with pytest.raises(SEUnavailableError):
            open_storage(url).stat(LFN)
        storage.bring_online("DESY-SE")
        assert open_storage(url).stat(LFN) == 6
    finally:
        storage.close()


def test_unknown_storage_kind() -> None:
    with pytest.raises(ValueError, match="unknown demo storage 'tape'"):
        create_storage("tape", Path("/nonexistent"), [])
    assert DirectoryStorage.kind == "directories"


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_demo_runs_on_xrootd_storage_elements() -> None:
    require_xrootd()
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "gridpilot", "demo", "--se", "xrootd", "--jobs", "8",
         "--seconds-per-job", "2"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert "DESY-SE is down" in out
    assert "demo succeeded" in out
    # Every server the demo started is gone with it.
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if "gridpilot-demo-xrootd-" in " ".join(p.info["cmdline"] or [])
    ]
    assert not left
