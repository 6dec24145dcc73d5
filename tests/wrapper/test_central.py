from __future__ import annotations

import itertools
import socket
import time

import grpc
import pytest

from gridpilot.channel import ClientSecurity, StaticToken
from gridpilot.v1 import common_pb2
from wrapper.central import CentralConnection, CentralError, backoff_delays


def test_backoff_delays_double_up_to_cap() -> None:
    delays = list(itertools.islice(backoff_delays(0.2, 2.0, 1.0), 6))
    assert delays == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def _dead_port() -> int:
    # A port that was free a moment ago: nothing listens there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_central_gives_up_after_budget() -> None:
    conn = CentralConnection(
        f"127.0.0.1:{_dead_port()}",
        job_id=1,
        attempt=1,
        security=ClientSecurity.insecure(StaticToken("job-token")),
        retry_seconds=1.0,
    )
    try:
        started = time.monotonic()
        with pytest.raises(CentralError) as info:
            conn.storage_elements()
        elapsed = time.monotonic() - started
        assert info.value.code is grpc.StatusCode.UNAVAILABLE
        assert "unreachable after" in str(info.value)
        assert 0.5 <= elapsed < 10
        assert conn.last_tries > 1
        # Status reports are best effort: they say no instead of raising.
        running = common_pb2.JobStatus.JOB_STATUS_RUNNING
        assert conn.report_status(running, "Application", budget=0.5) is False
        assert conn.running_reported is False
    finally:
        conn.close()
