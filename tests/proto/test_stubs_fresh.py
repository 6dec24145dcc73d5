"""The committed stubs in gridpilot/v1/ are exactly what proto/generate.py makes today."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "gridpilot" / "v1"


def _generate_function() -> Callable[[Path], None]:
    spec = importlib.util.spec_from_file_location(
        "gridpilot_proto_generate", REPO_ROOT / "proto" / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast(Callable[[Path], None], module.generate)


def _stub_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if p.is_file() and p.suffix in {".py", ".pyi"}
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    plugins = ("protoc-gen-mypy", "protoc-gen-mypy_grpc")
    missing = [p for p in plugins if shutil.which(p) is None]
    if missing:
        # mypy-protobuf is in the test extra: a missing plugin is a broken install, not a skip.
        pytest.fail(f"{', '.join(missing)} not found: pip install -e '.[test]'")

    _generate_function()(tmp_path)

    fresh = _stub_files(tmp_path / "gridpilot" / "v1")
    committed = _stub_files(COMMITTED)
    assert fresh, "generate() produced no stubs"
    assert sorted(fresh) == sorted(committed), (
        "generated and committed stub file names differ; run: python proto/generate.py"
    )
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}; run: python proto/generate.py and commit the result"
