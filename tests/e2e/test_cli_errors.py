"""Bad submissions through gbasf2 against a running central: one clear line on stderr, a
non-zero exit, and nothing stored."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gridpilot.cli.args import EXIT_UNREACHABLE, EXIT_USAGE
from tests.support.e2e_grid import RELEASE, Grid, e2e_grid

pytestmark = pytest.mark.e2e

LONG_NAME = "p" * 33


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    with e2e_grid(tmp_path_factory.mktemp("cli-errors")) as handle:
        handle.write_steering()
        yield handle


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# (case id, gbasf2 arguments after the steering file, expected exit code or None for "not 0",
#  words the error line must contain)
CASES: list[tuple[str, list[str], int | None, list[str]]] = [
    (
        "unknown-dataset",
        ["-p", "proj", "-i", "/belle/MC/no/such/dataset"],
        None,
        ["/belle/MC/no/such/dataset", "unknown"],
    ),
    (
        "bad-priority",
        ["-p", "proj", "--repetition", "1", "--priority", "11"],
        EXIT_USAGE,
        ["priority"],
    ),
    (
        "unknown-site",
        ["-p", "proj", "--repetition", "1", "--site", "LCG.NOWHERE.xx"],
        None,
        ["unknown site", "LCG.NOWHERE.xx"],
    ),
    ("project-bad-characters", ["-p", "bad/name!", "--repetition", "1"], EXIT_USAGE, ["bad/name!"]),
    ("project-too-long", ["-p", LONG_NAME, "--repetition", "1"], EXIT_USAGE, [LONG_NAME, "32"]),
]


def check_refused(grid: Grid, err: str, words: list[str]) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gbasf2: error: "), err
    for word in words:
        assert word in lines[0], (word, err)
    assert grid.jobs() == []


@pytest.mark.parametrize(
    ("args", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_submission_is_refused(
    grid: Grid, args: list[str], code: int | None, words: list[str]
) -> None:
    steering = grid.root / "user" / "steer.py"
    result = grid.cli("gbasf2", str(steering), "-s", RELEASE, *args, "--force")
    if code is None:
        assert result.code != 0, result
    else:
        assert result.code == code, result
    check_refused(grid, result.err, words)


def test_missing_steering_file_is_refused(grid: Grid) -> None:
    missing = grid.root / "user" / "no_such_steering.py"
    result = grid.cli("gbasf2", str(missing), "-p", "proj", "-s", RELEASE, "--force")
    assert result.code == EXIT_USAGE, result
    check_refused(grid, result.err, ["steering file", str(missing)])


def test_unreachable_central_is_reported(grid: Grid) -> None:
    steering = grid.root / "user" / "steer.py"
    target = f"127.0.0.1:{closed_port()}"
    result = grid.cli(
        "gbasf2", str(steering), "-p", "proj", "-s", RELEASE, "--repetition", "1", "--force",
        central=target,
    )  # fmt: skip
    assert result.code == EXIT_UNREACHABLE, result
    check_refused(grid, result.err, [target])
