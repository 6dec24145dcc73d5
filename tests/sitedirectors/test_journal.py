from __future__ import annotations

from pathlib import Path

import pytest

from sitedirectors.journal import Journal, JournalError


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "journal.json"
    journal = Journal.load(path)
    assert journal.entries() == []
    journal.add("a", "q", 10.0, "123:a")
    journal.add("b", "q", 11.0, "124:b")
    journal.mark_final("a", now=20.0)
    journal.mark_final("a", now=30.0)  # the first time counts
    # Adding again (a rebuilt cache) keeps the entry's cleanup timing.
    journal.add("a", "q", 12.0, "123:a")
    journal.mark_final("unknown", now=20.0)
    journal.save()
    loaded = Journal.load(path)
    a, b = loaded.get("a"), loaded.get("b")
    assert a is not None
    assert b is not None
    assert (a.reference, a.final_at, a.queue, a.submitted) == ("123:a", 20.0, "q", 10.0)
    assert (b.reference, b.final_at) == ("124:b", None)
    assert loaded.get("unknown") is None
    loaded.remove(["a", "missing"])
    loaded.save()
    assert [e.pilot_id for e in Journal.load(path).entries()] == ["b"]
    assert not path.with_name("journal.json.tmp").exists()


def test_corrupt_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    path.write_text("{not json")
    with pytest.raises(JournalError, match="corrupt pilot journal"):
        Journal.load(path)
    path.write_text('{"version": 99, "pilots": []}')
    with pytest.raises(JournalError, match="unsupported version 99"):
        Journal.load(path)
