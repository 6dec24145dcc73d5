"""Regenerate the Python stubs in gridpilot/v1/ from proto/gridpilot/v1/*.proto.

Usage: python proto/generate.py [--out DIR]

The stubs are committed; tests/proto/test_stubs_fresh.py regenerates them into a
temporary directory and fails when the committed ones differ.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "gridpilot" / "v1").glob("*.proto"))


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plugin = shutil.which("protoc-gen-mypy")
    grpc_plugin = shutil.which("protoc-gen-mypy_grpc")
    if plugin is None or grpc_plugin is None:
        raise SystemExit("protoc-gen-mypy not found: pip install mypy-protobuf (test extra)")
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--plugin=protoc-gen-mypy_grpc={grpc_plugin}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    package = out / "gridpilot" / "v1"
    (package / "__init__.py").write_text('"""Generated from proto/gridpilot/v1; do not edit."""\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO_ROOT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
