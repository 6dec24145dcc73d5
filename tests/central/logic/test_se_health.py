"""SE probes on real file:// SEs, the health they lead to, and what central then allows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from central.config import StorageSection
from central.logic.se_health import ProbeResult, after_probe, probe, probe_storage_elements
from central.logic.storage_elements import StorageElements
from central.store.records import SEHealthRecord, StorageElementRecord
from tests.central.logic.helpers import world
from tests.support.central_process import FAILOVER_SE, LOCAL_SE, SITE
from tests.support.inprocess import run
from wrapper.se import SpaceUsage, StorageError, StoragePlugin, open_storage
from wrapper.se.file import FilePlugin

SETTINGS = StorageSection(probe_bytes=4096, probe_failures=2)


def test_probe_writes_checks_reads_and_deletes(tmp_path: Path) -> None:
    result = probe(f"file://{tmp_path}", SETTINGS)
    assert result.ok, result.error
    assert result.space is not None
    assert result.space.total_bytes > 0
    # Nothing left but the (empty) probe directory.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_probe_of_a_broken_se_says_which_step_failed(tmp_path: Path) -> None:
    result = probe(f"file://{tmp_path}/missing", SETTINGS)
    assert not result.ok
    assert result.error.startswith("write: ")
    assert "unavailable" in result.error


class LyingPlugin(FilePlugin):
    """A real file SE whose checksum answers are wrong (a corrupting server)."""

    def checksum(self, lfn: str) -> str:
        return "00000000"


def test_probe_catches_an_se_that_corrupts(tmp_path: Path) -> None:
    def opener(url: str) -> StoragePlugin:
        return LyingPlugin(url)

    result = probe(f"file://{tmp_path}", SETTINGS, opener)
    assert not result.ok
    assert result.error.startswith("check: probe file reads back as size 4096 adler32 00000000")
    # The probe file does not stay behind.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_failures_in_a_row_make_an_se_unavailable_and_one_success_brings_it_back() -> None:
    bad, good = ProbeResult(False, 0.1, "write: refused"), ProbeResult(True, 0.2)
    first = after_probe(None, "SE", bad, failures=2, now=1.0)
    assert (first.available, first.consecutive_failures) == (True, 1)
    second = after_probe(first, "SE", bad, failures=2, now=2.0)
    assert (second.available, second.consecutive_failures, second.last_error) == (
        False,
        2,
        "write: refused",
    )
    third = after_probe(second, "SE", bad, failures=2, now=3.0)
    assert not third.available
    back = after_probe(third, "SE", good, failures=2, now=4.0)
    assert (back.available, back.consecutive_failures, back.last_ok, back.last_error) == (
        True,
        0,
        4.0,
        "",
    )
    assert (back.total_bytes, back.free_bytes) == (-1, -1)
    full = after_probe(back, "SE", ProbeResult(True, 0.1, space=SpaceUsage(100, 3)), 2, 5.0)
    assert (full.total_bytes, full.free_bytes) == (100, 3)
    # A failed probe keeps the last space known.
    assert after_probe(full, "SE", bad, 2, 6.0).free_bytes == 3


def _ses(health: SEHealthRecord | None = None, **flags: bool) -> StorageElements:
    record = StorageElementRecord(
        name="SE",
        site="S",
        url="file:///se",
        read_allowed=flags.get("read", True),
        write_allowed=flags.get("write", True),
    )
    return StorageElements(
        [record], settings=StorageSection(full_threshold=0.95), health=[health] if health else []
    )


@pytest.mark.parametrize(
    ("ses", "read", "write"),
    [
        (_ses(), None, None),
        (_ses(read=False), "reads disabled by an administrator", None),
        (_ses(write=False), None, "writes disabled by an administrator"),
        (
            _ses(SEHealthRecord(se="SE", available=False, consecutive_failures=3, last_error="x")),
            "unavailable after 3 failed probes (x)",
            "unavailable after 3 failed probes (x)",
        ),
        (
            _ses(SEHealthRecord(se="SE", total_bytes=1000, free_bytes=40)),
            None,
            "full: 96% used (no new writes above 95%)",
        ),
        (_ses(SEHealthRecord(se="SE", total_bytes=1000, free_bytes=60)), None, None),
    ],
)
def test_what_an_se_may_do(ses: StorageElements, read: str | None, write: str | None) -> None:
    assert ses.read_refusal("SE") == read
    assert ses.write_refusal("SE") == write
    assert ses.writable(["SE", "NOPE"]) == ([] if write else ["SE"])
    assert ses.read_refusal("NOPE") == "unknown storage element"


def test_probe_agent_step_records_health_and_skips_write_disabled_ses(tmp_path: Path) -> None:
    overrides = {"storage": {"probe_failures": 1, "probe_bytes": 1024}}

    async def body() -> None:
        async with world(tmp_path, overrides) as w:
            failover = w.ses.get(FAILOVER_SE)
            local = w.ses.get(LOCAL_SE)
            assert failover is not None
            assert local is not None
            await w.ses.set_status(w.store, FAILOVER_SE, read=True, write=False)
            shutil.rmtree(local.url.removeprefix("file://"))
            recorded = await probe_storage_elements(w.store, w.ses, w.clock)
            assert [h.se for h in recorded] == [LOCAL_SE]
            assert not recorded[0].available
            assert w.ses.read_refusal(LOCAL_SE) is not None
            assert (await w.store.list_se_health())[0].se == LOCAL_SE
            # The SE comes back: one probe and it is readable and writable again.
            os.mkdir(local.url.removeprefix("file://"))
            w.clock.advance(60)
            [again] = await probe_storage_elements(w.store, w.ses, w.clock)
            assert again.available
            assert again.total_bytes > 0
            assert w.ses.write_refusal(LOCAL_SE) is None

    run(body())


def test_plugin_space_of_a_file_se(tmp_path: Path) -> None:
    space = open_storage(f"file://{tmp_path}").space()
    assert space.total_bytes >= space.free_bytes > 0
    with pytest.raises(StorageError):
        open_storage(f"file://{tmp_path}/absent").space()


def test_jobs_of_a_site_whose_se_is_full_write_to_the_next_best_se(tmp_path: Path) -> None:
    se_root = tmp_path / "se"
    overrides = {
        "storage_elements": [
            {"name": LOCAL_SE, "site": SITE, "url": f"file://{se_root / 'local'}"},
            {"name": FAILOVER_SE, "site": SITE, "url": f"file://{se_root / 'failover'}"},
            {"name": "FAR-SE", "site": SITE, "url": f"file://{se_root / 'far'}"},
            {"name": "NEAR-SE", "site": SITE, "url": f"file://{se_root / 'near'}"},
        ],
        "distances": {SITE: {"FAR-SE": 50, "NEAR-SE": 5}},
    }

    async def body() -> None:
        async with world(tmp_path, overrides) as w:
            await w.submit(2)
            await w.submit(1, output_se=LOCAL_SE)
            await w.pilot()
            first = await w.match()
            assert first is not None
            assert first.output_se == LOCAL_SE
            w.ses.set_health(SEHealthRecord(se=LOCAL_SE, total_bytes=100, free_bytes=1))
            second = await w.match()
            assert second is not None
            # Both are the site's own SEs: the cheaper one.
            assert second.output_se == "NEAR-SE"
            assert second.failover_ses == [FAILOVER_SE]
            named = await w.match()
            assert named is not None
            # The user asked for LOCAL-SE by name: it stays the destination.
            assert named.output_se == LOCAL_SE

    run(body())
