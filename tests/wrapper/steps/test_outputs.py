from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.channel import ClientSecurity, StaticToken
from gridpilot.checksum import adler32_of_bytes
from gridpilot.v1 import common_pb2, data_pb2, pilots_pb2
from wrapper.central import CentralConnection
from wrapper.context import JobContext
from wrapper.errors import JobFailure
from wrapper.options import WrapperOptions
from wrapper.steps.outputs import (
    Target,
    UploadError,
    find_outputs,
    output_lfn,
    stage_out,
    upload_file,
    upload_targets,
)


def test_output_lfn() -> None:
    assert (
        output_lfn("alice", "proj1", "output.root", 42, 1)
        == "/belle/user/alice/proj1/sub00/output_42_1.root"
    )
    assert output_lfn("bob", "p", "hist", 7, 3) == "/belle/user/bob/p/sub00/hist_7_3"
    assert output_lfn("bob", "p", "a.tar.gz", 7, 2) == "/belle/user/bob/p/sub00/a.tar_7_2.gz"


@pytest.mark.parametrize(
    ("owner", "project", "name"),
    [("", "p", "o.root"), ("a/b", "p", "o.root"), ("a", "..", "o.root"), ("a", "p", "")],
)
def test_output_lfn_refuses_bad_parts(owner: str, project: str, name: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        output_lfn(owner, project, name, 1, 1)


def test_find_outputs_skips_inputs_dirs_and_non_matching(tmp_path: Path) -> None:
    for name in ("out.root", "in.root", "log.txt", "hist.root"):
        (tmp_path / name).write_text(name)
    (tmp_path / "dir.root").mkdir()
    (tmp_path / "link.root").symlink_to(tmp_path / "out.root")
    found = find_outputs(tmp_path, ["*.root", "out.*"], {"in.root"})
    assert [p.name for p in found] == ["hist.root", "out.root"]
    assert find_outputs(tmp_path, ["*.txt"], set()) == [tmp_path / "log.txt"]


def _se(name: str, url: str, write: bool = True) -> data_pb2.StorageElement:
    """An SE as central lists it; not writable as when its writes were disabled centrally."""
    refusal = "" if write else "writes disabled by an administrator"
    return data_pb2.StorageElement(
        name=name,
        url=url,
        write_allowed=write,
        read_allowed=True,
        readable=True,
        writable=write,
        write_refusal=refusal,
    )


def test_upload_targets_order_and_refusals() -> None:
    registry = {
        "DEST": _se("DEST", "file:///d"),
        "RO": _se("RO", "file:///ro", write=False),
        "FO": _se("FO", "file:///fo"),
    }
    targets = upload_targets("DEST", ["RO", "DEST", "NOPE", "FO"], registry)
    assert targets == [
        Target("DEST", "file:///d"),
        Target("RO", "file:///ro", "writes disabled by an administrator"),
        Target("NOPE", None, "unknown storage element"),
        Target("FO", "file:///fo"),
    ]


@pytest.fixture
def output(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "out.root"
    path.parent.mkdir()
    path.write_bytes(b"result " * 300)
    return path


LFN = "/belle/user/alice/p/sub00/out_1_1.root"


def _se_dir(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    return root


def test_upload_to_destination(tmp_path: Path, output: Path) -> None:
    dest = _se_dir(tmp_path, "dest")
    out = upload_file(output, LFN, [Target("DEST", f"file://{dest}")], "DEST")
    assert out.se == "DEST"
    assert out.destination_se == ""
    assert out.size == output.stat().st_size
    assert out.adler32 == adler32_of_bytes(output.read_bytes())
    assert (dest / LFN.lstrip("/")).read_bytes() == output.read_bytes()


def test_failover_when_destination_refuses(tmp_path: Path, output: Path) -> None:
    dest = tmp_path / "dest"
    dest.write_text("SE root replaced by a file: writes refused")
    failover = _se_dir(tmp_path, "failover")
    targets = [
        Target("DEST", f"file://{dest}"),
        Target("RO", "file:///ro", "writes disabled by an administrator"),
        Target("FO", f"file://{failover}"),
    ]
    out = upload_file(output, LFN, targets, "DEST")
    assert (out.se, out.destination_se) == ("FO", "DEST")
    assert (failover / LFN.lstrip("/")).read_bytes() == output.read_bytes()


def test_all_targets_fail(tmp_path: Path, output: Path) -> None:
    dest = tmp_path / "dest"
    dest.write_text("x")
    with pytest.raises(UploadError) as info:
        upload_file(output, LFN, [Target("DEST", f"file://{dest}")], "DEST")
    assert "DEST:" in str(info.value)
    assert LFN in str(info.value)
    with pytest.raises(UploadError, match="no storage element"):
        upload_file(output, LFN, [], "DEST")


def _context(tmp_path: Path, registry: dict[str, data_pb2.StorageElement]) -> JobContext:
    job = pilots_pb2.MatchedJob(
        job_id=12,
        attempt=2,
        spec=common_pb2.JobSpec(owner="alice", project="p1"),
        output_se="DEST",
        failover_ses=["FO"],
    )
    options = WrapperOptions(central="127.0.0.1:1", job_dir=tmp_path / "job", site="S")
    # Never dialled: the SE registry below is already known.
    central = CentralConnection(
        options.central, job.job_id, job.attempt, ClientSecurity.insecure(StaticToken("t"))
    )
    ctx = JobContext(options=options, job=job, central=central, _storage_elements=registry)
    ctx.work_dir.mkdir(parents=True)
    return ctx


def test_stage_out_names_and_skips_inputs(tmp_path: Path) -> None:
    dest = _se_dir(tmp_path, "dest")
    ctx = _context(tmp_path, {"DEST": _se("DEST", f"file://{dest}")})
    (ctx.work_dir / "output.root").write_bytes(b"out")
    (ctx.work_dir / "input.root").write_bytes(b"in")
    ctx.input_names.add("input.root")
    try:
        (out,) = stage_out(ctx)
    finally:
        ctx.central.close()
    assert out.lfn == "/belle/user/alice/p1/sub00/output_12_2.root"
    assert (out.se, out.destination_se) == ("DEST", "")
    assert (dest / out.lfn.lstrip("/")).read_bytes() == b"out"


def test_stage_out_fails_when_no_se_takes_the_file(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.write_text("refusing")
    ctx = _context(
        tmp_path, {"DEST": _se("DEST", f"file://{dest}"), "FO": _se("FO", "file:///x", False)}
    )
    (ctx.work_dir / "output.root").write_bytes(b"out")
    try:
        with pytest.raises(JobFailure) as info:
            stage_out(ctx)
    finally:
        ctx.central.close()
    assert info.value.category == common_pb2.ExitCategory.EXIT_CATEGORY_UPLOAD_FAILED
    assert "FO: writes disabled by an administrator" in info.value.message
    assert info.value.outputs == []
