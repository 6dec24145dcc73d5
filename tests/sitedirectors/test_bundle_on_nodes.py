"""The pilot bundle as directors ship it: named by its checksum, fetched by URL templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitedirectors.bundle import BundleError, PilotBundle
from tests.support.bundle import echo_bundle


def test_a_bundle_is_named_and_fetched_by_its_checksum(tmp_path: Path) -> None:
    bundle = echo_bundle(tmp_path)
    assert bundle.file_name == f"gridpilot-pilot-{bundle.sha256}.tar.gz"
    assert bundle.url_from("https://www.kek.jp/gridpilot/{file_name}") == (
        f"https://www.kek.jp/gridpilot/{bundle.file_name}"
    )
    assert bundle.url_from("osdf:///belle/pilot/{sha256}.tgz") == (
        f"osdf:///belle/pilot/{bundle.sha256}.tgz"
    )
    # A fixed URL stays as it is (then the site must keep it at this bundle's content).
    assert bundle.url_from("https://h/pilot.tar.gz") == "https://h/pilot.tar.gz"


def test_a_missing_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=f"pilot bundle {tmp_path}/none.tgz does not exist"):
        PilotBundle.load(tmp_path / "none.tgz")
