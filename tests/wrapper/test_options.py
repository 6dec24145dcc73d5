"""The wrapper's command line: TLS towards central unless --insecure, the job token's file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gridpilot.v1 import common_pb2, pilots_pb2
from tests.wrapper.helpers import subprocess_env
from wrapper.main import WrapperExit
from wrapper.options import parse_options

BASE = ["--central", "h:1", "--job-dir", "/jobs/job_1_1", "--site", "S"]


def test_ca_or_insecure_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(BASE)
    assert "--ca FILE is needed" in capsys.readouterr().err
    insecure = parse_options([*BASE, "--insecure"])
    assert insecure.insecure
    assert insecure.ca is None


def test_token_file_defaults_to_the_job_dir() -> None:
    options = parse_options([*BASE, "--ca", "/etc/ca.pem"])
    assert options.ca == Path("/etc/ca.pem")
    assert options.job_token_file == Path("/jobs/job_1_1/job.token")
    other = parse_options([*BASE, "--ca", "/etc/ca.pem", "--token-file", "/t/job.token"])
    assert other.job_token_file == Path("/t/job.token")


def test_looping_limit(capsys: pytest.CaptureFixture[str]) -> None:
    base = [*BASE, "--insecure"]
    assert parse_options(base).looping_limit == 7200
    assert parse_options([*base, "--looping-limit", "0"]).looping_limit == 0
    with pytest.raises(SystemExit):
        parse_options([*base, "--looping-limit", "-1"])
    assert "must not be negative" in capsys.readouterr().err


def test_no_job_token_exits_before_contacting_central(tmp_path: Path) -> None:
    job_dir = tmp_path / "job_5_1"
    job_dir.mkdir()
    matched = pilots_pb2.MatchedJob(job_id=5, attempt=1, spec=common_pb2.JobSpec(project="p"))
    (job_dir / "job.pb").write_bytes(matched.SerializeToString())
    result = subprocess.run(
        [sys.executable, "-m", "wrapper", "--central", "127.0.0.1:1", "--job-dir", str(job_dir),
         "--site", "S", "--insecure"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
        check=False,
    )  # fmt: skip
    assert result.returncode == WrapperExit.NO_TOKEN, result.stderr
    assert "wrapper.no_job_token" in result.stderr
    assert "job.token does not exist" in result.stderr
