"""The `gridpilot` umbrella: version, help, dispatch to components, admin argument checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gridpilot import __version__
from gridpilot.cli import main as umbrella


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert umbrella.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gridpilot {__version__}"


def test_help_lists_commands_without_loading_grpc() -> None:
    code = (
        "import sys\n"
        "from gridpilot.cli.main import main\n"
        "rc = main(['--help'])\n"
        "print('LOADED', 'grpc' in sys.modules, 'rich' in sys.modules, rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    for command in ("central", "pilot", "sitedirector", "admin", "demo"):
        assert command in result.stdout
    assert result.stdout.strip().endswith("LOADED False False 0")


def test_component_gets_the_rest_of_the_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    # The real central: `gridpilot central serve --help` is central's own `serve --help`.
    assert umbrella.main(["central", "serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config" in out
    assert "--port-file" in out
    assert umbrella.main(["central", "serve"]) == 2
    assert "--config" in capsys.readouterr().err


def test_missing_component_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(umbrella.COMPONENTS, "demo", ("gridpilot.no_such_module", "x"))
    assert umbrella.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gridpilot: error: 'gridpilot demo' is not available here")
    assert err.count("\n") == 1


def test_admin_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert umbrella.main(["admin"]) == 2
    assert "required: ACTION" in capsys.readouterr().err
    assert umbrella.main(["admin", "se-status", "KEK-SE", "--central", "h:1"]) == 2
    err = capsys.readouterr().err
    assert "--read/--no-read" in err
    assert err.count("\n") == 1
    assert umbrella.main(["admin", "pilots", "--status", "Flying", "--central", "h:1"]) == 2
    assert "unknown pilot state 'Flying'" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert umbrella.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
