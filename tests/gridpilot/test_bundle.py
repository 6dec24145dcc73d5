"""The pilot bundle: a real build (once per session), its layout and manifest, the launcher
on Debian's own Python, the directors' start script run with sh (good, tampered, lying
manifest, cached, concurrent), verify_bundle, and the `gridpilot admin bundle` command."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import pytest

from gridpilot import __version__
from gridpilot.bundle import (
    LAUNCHER,
    LAUNCHER_SCRIPT,
    MANIFEST,
    BuildOptions,
    BundleError,
    build_time_from_env,
    bundle_file_name,
    python_tag,
    verify_bundle,
)
from gridpilot.bundle.build import pip_command
from gridpilot.bundle.deps import (
    DECLARED,
    OPTIONAL,
    LoadedModule,
    classify,
    normalize,
    probe_imports,
    runtime_needs,
)
from gridpilot.bundle.installed import read_installed, wheel_glibc
from gridpilot.bundle.launcher import EXIT_NO_PYTHON
from gridpilot.bundle.manifest import parse_manifest
from gridpilot.cli import main as umbrella
from sitedirectors import start_script
from sitedirectors.bundle import PilotBundle
from sitedirectors.start_script import EXIT_BAD_BUNDLE
from tests.support.bundle import (
    IMPORT_CHECK,
    NODE_PYTHON,
    START_TIMEOUT,
    TEST_BUILD_EPOCH,
    lying_bundle,
    manifest_of,
    require_node_python,
    run_start_script,
    running_python,
    small_bundle,
    start_script_for,
    tarball_of_tree,
)

REPO = Path(__file__).resolve().parents[2]
TAG = python_tag(running_python())
RUN_TIMEOUT = 60.0
_LINE = re.compile(r"^[0-9a-f]{64}  \S.*$")


def _run(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, cwd=cwd, check=False
    )


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _members(bundle: PilotBundle) -> list[tarfile.TarInfo]:
    with tarfile.open(bundle.path, "r:gz") as tar:
        return tar.getmembers()


@pytest.fixture(scope="module")
def unpacked(pilot_bundle: PilotBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session bundle unpacked as a node does it: tar, then sha256sum -c the manifest."""
    root = tmp_path_factory.mktemp("unpacked")
    assert _run(["tar", "-xzf", str(pilot_bundle.path), "-C", str(root)]).returncode == 0
    check = _run(["sha256sum", "--quiet", "--strict", "-c", "MANIFEST.sha256"], cwd=root)
    assert check.returncode == 0, check.stdout + check.stderr
    return root


# --- layout and manifest ------------------------------------------------------------------


def test_layout(pilot_bundle: PilotBundle) -> None:
    members = _members(pilot_bundle)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert all(not n.startswith(("/", "./")) and ".." not in n.split("/") for n in names)
    # Reproducible entries: no owner, no build-machine time.
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "", "", TEST_BUILD_EPOCH)
    }
    files = {m.name: m for m in members if m.isfile()}
    assert all(m.isfile() or m.isdir() for m in members)
    for required in (
        "MANIFEST.sha256",
        "bundle.json",
        "bin/gridpilot-pilot",
        "app/pilot/__main__.py",
        "app/wrapper/main.py",
        "app/gridpilot/v1/pilots_pb2.py",
        "app/gridpilot/demo/basf2_standin.py",
        f"lib/{TAG}/grpc/__init__.py",
        f"lib/{TAG}/msgspec/__init__.py",
        f"lib/{TAG}/jwt/__init__.py",
        f"lib/{TAG}/uvloop/__init__.py",
    ):
        assert required in files, required
    assert files["bin/gridpilot-pilot"].mode == 0o755
    assert {n.split("/")[1] for n in names if n.startswith("app/")} == {
        "gridpilot",
        "pilot",
        "wrapper",
    }
    assert {n.split("/")[1] for n in names if n.startswith("lib/")} == {TAG}
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    # The dependencies' console scripts would name the builder's interpreter.
    assert not [n for n in names if n.startswith(f"lib/{TAG}/bin/")]


def test_manifest_lists_every_file_with_its_sha256(pilot_bundle: PilotBundle) -> None:
    with tarfile.open(pilot_bundle.path, "r:gz") as tar:
        digests: dict[str, str] = {}
        manifest_text = ""
        for member in tar:
            stream = tar.extractfile(member) if member.isfile() else None
            if stream is None:
                continue
            data = stream.read()
            if member.name == "MANIFEST.sha256":
                manifest_text = data.decode()
            else:
                digests[member.name] = hashlib.sha256(data).hexdigest()
    lines = manifest_text.splitlines()
    assert all(_LINE.match(line) for line in lines)
    paths = [line[66:] for line in lines]
    assert paths == sorted(paths)
    assert parse_manifest(manifest_text) == digests


def test_bundle_json(pilot_bundle: PilotBundle, unpacked: Path) -> None:
    info = json.loads((unpacked / "bundle.json").read_text())
    assert info["gridpilot_version"] == __version__
    assert info["python_tags"] == [TAG]
    assert info["built"] == "2023-11-14T22:13:20Z"
    assert info["built_epoch"] == TEST_BUILD_EPOCH
    assert info["app"] == ["gridpilot", "pilot", "wrapper"]
    python = info["pythons"][TAG]
    assert python["version"] == running_python()
    assert python["min_glibc"]
    installed = {normalize(k): v for k, v in python["requirements"].items()}
    # Pinned to what this environment has, so bundle and central run the same versions.
    for name in DECLARED:
        assert installed[normalize(name)] == metadata.version(name), name
    assert not set(installed) & OPTIONAL
    # bundle.json says what pip really installed.
    assert read_installed(unpacked / "lib" / TAG).versions == python["requirements"]


def test_unpacked_launcher_is_the_one_built(unpacked: Path) -> None:
    launcher = unpacked / "bin" / "gridpilot-pilot"
    assert launcher.read_text() == LAUNCHER_SCRIPT
    assert launcher.stat().st_mode & 0o777 == 0o755


# --- the launcher ---------------------------------------------------------------------------


def test_launcher_runs_the_pilot_with_debian_python(unpacked: Path, tmp_path: Path) -> None:
    require_node_python()
    launcher = str(unpacked / "bin" / "gridpilot-pilot")
    # A sitecustomize after the bundle on PYTHONPATH records the path the pilot ran with.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import json, os, sys\n"
        "with open(os.environ['GP_TEST_SYS_PATH'], 'w') as f:\n"
        "    json.dump(sys.path, f)\n"
    )
    recorded = tmp_path / "sys_path.json"
    env = _env(
        GRIDPILOT_PYTHON=str(NODE_PYTHON), PYTHONPATH=str(hook), GP_TEST_SYS_PATH=str(recorded)
    )
    # From the source checkout: the launcher must still run the bundle's pilot, not this one.
    result = _run([launcher, "--help"], env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "--central" in result.stdout
    sys_path = json.loads(recorded.read_text())
    bundle = unpacked.resolve()
    assert sys_path[:3] == [f"{bundle}/app", f"{bundle}/lib/{TAG}", str(hook)]
    assert str(REPO) not in sys_path
    assert "" not in sys_path
    # Found on PATH as well: /usr/bin holds python3.11, no newer one.
    result = _run(
        ["/bin/sh", launcher, "--help"], env=_env(GRIDPILOT_PYTHON=None, PATH="/usr/bin:/bin")
    )
    assert result.returncode == 0, result.stderr
    assert "--central" in result.stdout


def test_bundle_alone_provides_every_import(unpacked: Path, tmp_path: Path) -> None:
    require_node_python()
    # The PYTHONPATH the launcher sets; the wrapper inherits it from the pilot.
    env = _env(PYTHONPATH=f"{unpacked}/app:{unpacked}/lib/{TAG}", PYTHONNOUSERSITE="1")
    # Run elsewhere than in the source checkout, which `-c` would put first on sys.path.
    result = _run([str(NODE_PYTHON), "-s", "-c", IMPORT_CHECK], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name, file in json.loads(result.stdout).items():
        assert Path(file).is_relative_to(unpacked), f"{name} came from {file}"


def test_launcher_without_a_usable_python(tmp_path: Path) -> None:
    # A bundle for a Python this machine lacks: the launcher must say so and exit 78.
    launcher = tmp_path / "bundle" / "bin" / "gridpilot-pilot"
    launcher.parent.mkdir(parents=True)
    launcher.write_text(LAUNCHER_SCRIPT)
    launcher.chmod(0o755)
    (tmp_path / "bundle" / "lib" / "cp310").mkdir(parents=True)
    result = _run([str(launcher)], env=_env(GRIDPILOT_PYTHON=sys.executable))
    assert result.returncode == EXIT_NO_PYTHON
    assert f"is {TAG}; this bundle supports CPython 3.10" in result.stderr
    only = tmp_path / "path"
    only.mkdir()
    (only / "python3").symlink_to(sys.executable)
    result = _run(["/bin/sh", str(launcher)], env=_env(GRIDPILOT_PYTHON=None, PATH=str(only)))
    assert result.returncode == EXIT_NO_PYTHON
    assert "no supported Python on PATH; this bundle needs CPython 3.10" in result.stderr
    result = _run([str(launcher)], env=_env(GRIDPILOT_PYTHON=str(tmp_path / "no-python")))
    assert result.returncode == EXIT_NO_PYTHON
    assert "does not run" in result.stderr


# --- the directors' start script, run with sh -----------------------------------------------

_PRINT_BUNDLE = ("/bin/sh", "-c", 'echo "$GRIDPILOT_BUNDLE"', "sh")


def test_start_script_runs_the_pilot_from_the_bundle(
    pilot_bundle: PilotBundle, tmp_path: Path
) -> None:
    script = start_script_for(
        pilot_bundle.path,
        pilot_bundle.sha256,
        tmp_path,
        arguments=("--help",),
        environment={"GRIDPILOT_PYTHON": sys.executable},
    )
    result = run_start_script(script)
    assert result.returncode == 0, result.stderr
    assert "--central" in result.stdout
    cache = tmp_path / "cache"
    assert sorted(p.name for p in cache.iterdir()) == [pilot_bundle.sha256]
    assert (cache / pilot_bundle.sha256 / ".gridpilot-complete").is_file()


def test_second_start_uses_the_cache(pilot_bundle: PilotBundle, tmp_path: Path) -> None:
    script = start_script_for(
        pilot_bundle.path,
        pilot_bundle.sha256,
        tmp_path,
        arguments=("--help",),
        environment={"GRIDPILOT_PYTHON": sys.executable},
    )
    assert run_start_script(script).returncode == 0
    dest = tmp_path / "cache" / pilot_bundle.sha256
    inode = dest.stat().st_ino
    # Without tar, mktemp and mv on PATH, only a start that skips unpacking can succeed.
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("sha256sum", "cut", "mkdir"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    result = run_start_script(script, path_dirs=str(tools))
    assert result.returncode == 0, result.stderr
    assert "--central" in result.stdout
    assert dest.stat().st_ino == inode
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [pilot_bundle.sha256]


def test_start_script_exports_the_unpacked_bundle(
    pilot_bundle: PilotBundle, tmp_path: Path
) -> None:
    script = start_script_for(
        pilot_bundle.path, pilot_bundle.sha256, tmp_path, command=_PRINT_BUNDLE
    )
    result = run_start_script(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "cache" / pilot_bundle.sha256)


def test_tampered_bundle_is_refused(pilot_bundle: PilotBundle, tmp_path: Path) -> None:
    tampered = tmp_path / "node" / pilot_bundle.file_name
    tampered.parent.mkdir()
    shutil.copyfile(pilot_bundle.path, tampered)
    with tampered.open("ab") as fh:
        fh.write(b"\0")
    got = hashlib.sha256(tampered.read_bytes()).hexdigest()
    script = start_script_for(tampered, pilot_bundle.sha256, tmp_path, command=_PRINT_BUNDLE)
    result = run_start_script(script)
    assert result.returncode == EXIT_BAD_BUNDLE
    assert "checksum mismatch" in result.stderr
    assert pilot_bundle.sha256 in result.stderr
    assert got in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "cache").exists()


def test_bundle_not_matching_its_manifest_is_refused(tmp_path: Path) -> None:
    tarball = tmp_path / "lying.tar.gz"
    sha = lying_bundle(tmp_path / "tree", tarball)
    script = start_script_for(tarball, sha, tmp_path / "node", command=_PRINT_BUNDLE)
    result = run_start_script(script)
    assert result.returncode == EXIT_BAD_BUNDLE
    assert "does not match its own MANIFEST.sha256" in result.stderr
    assert "bin/gridpilot-pilot" in result.stderr  # sha256sum names the file
    assert result.stdout == ""
    # Neither a cache entry nor a half-unpacked temporary directory is left.
    assert list((tmp_path / "node" / "cache").iterdir()) == []


def test_concurrent_starts_share_one_unpacked_bundle(
    pilot_bundle: PilotBundle, tmp_path: Path
) -> None:
    scripts = [
        start_script_for(
            pilot_bundle.path,
            pilot_bundle.sha256,
            tmp_path,
            command=_PRINT_BUNDLE,
            pilot_id=f"p-{i}",
        )
        for i in range(3)
    ]
    procs = [
        subprocess.Popen(
            ["/bin/sh", str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for s in scripts
    ]
    results = [(p.communicate(timeout=START_TIMEOUT), p.returncode) for p in procs]
    dest = str(tmp_path / "cache" / pilot_bundle.sha256)
    for (out, err), code in results:
        assert code == 0, err
        assert out.strip() == dest
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [pilot_bundle.sha256]


# --- verify_bundle ------------------------------------------------------------------------


def test_verify_accepts_the_built_bundle(pilot_bundle: PilotBundle, unpacked: Path) -> None:
    info = verify_bundle(pilot_bundle.path, expected_sha256=pilot_bundle.sha256)
    assert info.sha256 == pilot_bundle.sha256
    assert info.gridpilot_version == __version__
    assert info.python_tags == (TAG,)
    assert info.files == len((unpacked / "MANIFEST.sha256").read_text().splitlines()) + 1
    assert info.requirements[TAG]["grpcio"] == metadata.version("grpcio")


def test_verify_refuses_a_tampered_copy(pilot_bundle: PilotBundle, tmp_path: Path) -> None:
    copy = tmp_path / pilot_bundle.path.name
    shutil.copyfile(pilot_bundle.path, copy)
    with copy.open("ab") as fh:
        fh.write(b"x")
    # Python's tarfile stops at the end-of-archive blocks; the node's tar does not.
    with pytest.raises(BundleError, match=r"not a complete, readable \.tar\.gz"):
        verify_bundle(copy)
    with pytest.raises(BundleError, match=f"checksum mismatch: expected {pilot_bundle.sha256}"):
        verify_bundle(copy, expected_sha256=pilot_bundle.sha256)
    shutil.copyfile(
        pilot_bundle.path.with_name(pilot_bundle.path.name + ".sha256"), f"{copy}.sha256"
    )
    with pytest.raises(BundleError, match=r"checksum mismatch: gridpilot-pilot-.*\.sha256 says"):
        verify_bundle(copy)


def test_verify_names_each_file_that_does_not_match(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    files = small_bundle(root)
    (root / "MANIFEST.sha256").write_text(manifest_of(files))
    tarball_of_tree(root, tmp_path / "good.tar.gz")
    assert verify_bundle(tmp_path / "good.tar.gz").gridpilot_version == "9"

    (root / "app/pilot/__main__.py").write_bytes(b"print('changed')\n")
    (root / "app/extra.py").write_bytes(b"")
    (root / f"lib/{TAG}/dep.py").unlink()
    tarball_of_tree(root, tmp_path / "bad.tar.gz")
    with pytest.raises(BundleError) as caught:
        verify_bundle(tmp_path / "bad.tar.gz")
    message = str(caught.value)
    assert "does not match its own MANIFEST.sha256" in message
    assert "app/pilot/__main__.py has sha256" in message
    assert "app/extra.py is not listed" in message
    assert f"lib/{TAG}/dep.py is listed but missing" in message


def test_verify_checks_the_layout(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    files = small_bundle(root)
    (root / "MANIFEST.sha256").write_text(manifest_of(files))
    (root / "bin/gridpilot-pilot").chmod(0o644)
    tarball_of_tree(root, tmp_path / "b.tar.gz")
    with pytest.raises(BundleError, match="bin/gridpilot-pilot is not executable"):
        verify_bundle(tmp_path / "b.tar.gz")
    (root / "bin/gridpilot-pilot").unlink()
    tarball_of_tree(root, tmp_path / "b.tar.gz")
    with pytest.raises(BundleError, match="not a pilot bundle: it has no bin/gridpilot-pilot"):
        verify_bundle(tmp_path / "b.tar.gz")
    with tarfile.open(tmp_path / "link.tar.gz", "w:gz") as tar:
        link = tarfile.TarInfo("bin/gridpilot-pilot")
        link.type, link.linkname = tarfile.SYMTYPE, "/bin/sh"
        tar.addfile(link)
    with pytest.raises(BundleError, match="not a regular file or directory"):
        verify_bundle(tmp_path / "link.tar.gz")
    with tarfile.open(tmp_path / "escape.tar.gz", "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("../escape"))
    with pytest.raises(BundleError, match="not a plain relative path"):
        verify_bundle(tmp_path / "escape.tar.gz")


# --- the command ----------------------------------------------------------------------------


def _gridpilot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


def test_cli_build_is_reproducible(pilot_bundle: PilotBundle, tmp_path: Path) -> None:
    # The same sources, pins and build time as the session bundle: the very same bytes, so
    # nodes that cached the old bundle keep using their copy.
    out = tmp_path / "out"
    env = _env(SOURCE_DATE_EPOCH=str(TEST_BUILD_EPOCH))
    result = _gridpilot(
        "admin",
        "bundle",
        "build",
        "--out",
        str(out),
        "--python",
        running_python(),
        "--json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["sha256"] == pilot_bundle.sha256
    assert row["path"] == str(out.resolve() / pilot_bundle.path.name)
    assert row["python_tags"] == [TAG]
    assert sorted(p.name for p in out.iterdir()) == [
        pilot_bundle.path.name,
        pilot_bundle.path.name + ".sha256",
    ]
    sidecar = (out / (pilot_bundle.path.name + ".sha256")).read_text()
    assert sidecar == f"{pilot_bundle.sha256}  {pilot_bundle.path.name}\n"
    check = _run(
        ["sha256sum", "--quiet", "--strict", "-c", f"{pilot_bundle.path.name}.sha256"], cwd=out
    )
    assert check.returncode == 0, check.stderr


def test_cli_verify(pilot_bundle: PilotBundle, tmp_path: Path) -> None:
    result = _gridpilot("admin", "bundle", "verify", str(pilot_bundle.path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == pilot_bundle.sha256
    result = _gridpilot("admin", "bundle", "verify", str(pilot_bundle.path))
    assert result.returncode == 0
    assert pilot_bundle.sha256 in result.stdout
    result = _gridpilot("admin", "bundle", "verify", str(pilot_bundle.path), "--sha256", "0" * 64)
    assert result.returncode == 1
    assert result.stderr.startswith("gridpilot admin bundle verify: error: ")
    assert "checksum mismatch" in result.stderr
    assert result.stderr.count("\n") == 1


def test_pip_failure_names_the_python_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    result = _gridpilot(
        "admin",
        "bundle",
        "build",
        "--out",
        str(out),
        "--python",
        running_python(),
        "--find-links",
        str(empty),
        "--pip-option=--no-index",
        "--quiet",
    )
    assert result.returncode == 1
    assert f"pip install for Python {running_python()} failed" in result.stderr
    # pip's own last lines say what was missing.
    assert "\nERROR: " in result.stderr
    assert list(out.iterdir()) == []


def test_umbrella_dispatches_admin_bundle(
    pilot_bundle: PilotBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    assert umbrella.main(["admin", "--help"]) == 0
    assert "bundle" in capsys.readouterr().out
    assert umbrella.main(["admin", "bundle", "verify", str(pilot_bundle.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == pilot_bundle.sha256
    assert umbrella.main(["admin", "bundle", "build", "--python", "3.9"]) == 2
    assert "invalid choice: '3.9'" in capsys.readouterr().err


# --- the pieces -----------------------------------------------------------------------------


def test_names_agree_with_the_start_script() -> None:
    assert LAUNCHER == start_script.BUNDLE_LAUNCHER
    assert MANIFEST == start_script.BUNDLE_MANIFEST
    assert EXIT_NO_PYTHON == start_script.EXIT_BAD_BUNDLE
    assert bundle_file_name("1.2") == "gridpilot-pilot-1.2.tar.gz"


def test_python_tag() -> None:
    assert [python_tag(v) for v in ("3.11", "3.12", "3.13")] == ["cp311", "cp312", "cp313"]
    for bad in ("3.10", "3.14", "3", "cp311", ""):
        with pytest.raises(BundleError, match=re.escape("supported: 3.11, 3.12, 3.13")):
            python_tag(bad)


def test_build_time_from_env() -> None:
    assert build_time_from_env({}) is None
    assert build_time_from_env({"SOURCE_DATE_EPOCH": " 1700000000 "}) == 1_700_000_000
    for bad in ("yesterday", "-5"):
        with pytest.raises(BundleError, match="SOURCE_DATE_EPOCH"):
            build_time_from_env({"SOURCE_DATE_EPOCH": bad})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("abc  x\n", "line 1 is not"),
        (f"{'0' * 64} x\n", "line 1 is not"),  # one space: not sha256sum's format
        (f"{'0' * 64}  a\n{'1' * 64}  a\n", "lists a twice"),
        (f"{'0' * 64}  ../etc/passwd\n", "not a plain relative path"),
        (f"{'0' * 64}  /etc/passwd\n", "not a plain relative path"),
        (f"{'0' * 64}  a\\\\b\n", "backslash"),
    ],
)
def test_parse_manifest_refuses(text: str, error: str) -> None:
    with pytest.raises(BundleError, match=error):
        parse_manifest(text)


@pytest.mark.parametrize(
    ("tags", "glibc"),
    [
        (["cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-manylinux2014_x86_64"], (2, 17)),
        (["cp311-abi3-manylinux_2_28_x86_64"], (2, 28)),
        (["cp311-cp311-manylinux_2_5_x86_64", "cp311-cp311-manylinux1_x86_64"], (2, 5)),
        (["py3-none-any"], None),
    ],
)
def test_wheel_glibc(tags: list[str], glibc: tuple[int, int] | None) -> None:
    assert wheel_glibc(tags) == glibc


def test_pip_command_asks_for_linux_wheels_only(tmp_path: Path) -> None:
    options = BuildOptions(tmp_path, find_links=(Path("/w"),), pip_options=("--no-index",))
    argv = pip_command(tmp_path / "t", "3.12", {"grpcio": "1.2"}, tmp_path / "c.txt", options)
    assert argv[:4] == [sys.executable, "-m", "pip", "install"]
    joined = " ".join(argv)
    for part in (
        f"--target {tmp_path / 't'}",
        "--only-binary=:all:",
        "--implementation cp --python-version 3.12",
        "--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64",
        "--no-compile",
        f"--constraint {tmp_path / 'c.txt'}",
        "--find-links /w --no-index grpcio==1.2",
    ):
        assert part in joined


def test_archive_is_reproducible_and_normalised(tmp_path: Path) -> None:
    files = {"b/run.sh": b"#!/bin/sh\n", "a.txt": b"a", "b/c/d.txt": b"d"}
    digests = []
    for index, order in enumerate((sorted(files), sorted(files, reverse=True))):
        root = tmp_path / f"tree{index}"
        for name in order:  # another creation order, other modes and times on disk
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(files[name])
            os.utime(root / name, (1000 + index, 1000 + index))
        (root / "b/run.sh").chmod(0o700 if index else 0o755)
        (root / "a.txt").chmod(0o600 if index else 0o644)
        tarball_of_tree(root, tmp_path / f"{index}.tar.gz", mtime=42)
        digests.append(hashlib.sha256((tmp_path / f"{index}.tar.gz").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    raw = (tmp_path / "0.tar.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header time
    with tarfile.open(tmp_path / "0.tar.gz") as tar:
        modes = {m.name: (m.mode, m.mtime) for m in tar.getmembers()}
    assert modes == {
        "a.txt": (0o644, 42),
        "b": (0o755, 42),
        "b/c": (0o755, 42),
        "b/c/d.txt": (0o644, 42),
        "b/run.sh": (0o755, 42),
    }
    (tmp_path / "tree0" / "link").symlink_to("a.txt")
    with pytest.raises(BundleError, match="symbolic link"):
        tarball_of_tree(tmp_path / "tree0", tmp_path / "x.tar.gz")


def test_runtime_needs_of_this_installation() -> None:
    needs = runtime_needs()
    assert set(needs.app) == {"gridpilot", "pilot", "wrapper"}  # not central, sitedirectors
    assert needs.app["pilot"] == (REPO / "pilot").resolve() or needs.app["pilot"].is_dir()
    wanted = {normalize(name) for name in needs.requirements}
    assert {normalize(name) for name in DECLARED} <= wanted
    assert not wanted & OPTIONAL
    for name, version in needs.requirements.items():
        assert metadata.version(name) == version
        assert needs.constraints[name] == version
    # A dependency of a dependency is pinned too (cryptography needs cffi, cffi pycparser).
    assert "pycparser" in {normalize(name) for name in needs.constraints}


def test_a_module_of_no_distribution_is_an_error(tmp_path: Path) -> None:
    loaded = probe_imports()
    stray = tmp_path / "stray.py"
    stray.write_text("")
    with pytest.raises(BundleError, match=f"module stray .*{stray}.* belongs to no installed"):
        classify([*loaded, LoadedModule("stray", str(stray))])
