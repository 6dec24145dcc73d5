from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from central.store.sqlite import SqliteStore
from tests.central.store.helpers import StoreRunner, run_with_store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "central.db"


@pytest.fixture
def with_store(db_path: Path) -> StoreRunner:
    """Run an async body against a freshly opened store on db_path (closed afterwards)."""

    def runner(body: Callable[[SqliteStore], Awaitable[Any]]) -> Any:
        return run_with_store(db_path, body)

    return runner
