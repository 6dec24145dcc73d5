from __future__ import annotations

import pytest

from central.matcher import (
    Requirements,
    Resources,
    cpu_bucket,
    decode_requirements,
    encode_requirements,
    pilot_tags,
    requirements_from_spec,
)
from gridpilot.v1 import common_pb2


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0, 360),
        (360, 360),
        (361, 1800),
        (3600, 3600),
        (3601, 21600),
        (86400, 86400),
        (200000, 259200),
        (259200, 259200),
        (259201, 345600),
        (10 * 86400, 10 * 86400),
        (10 * 86400 + 1, 11 * 86400),
    ],
)
def test_cpu_bucket_rounds_up(seconds: int, bucket: int) -> None:
    assert cpu_bucket(seconds) == bucket


def test_requirements_from_spec_is_canonical() -> None:
    spec = common_pb2.JobSpec(
        owner="mallory",  # ignored: the caller's identity wins
        cpu_time=4000,
        sites=["B", "A", "B"],
        banned_sites=["C"],
        platform="el9",
        job_type="User",
        number_of_processors=4,
        max_ram_mb=3000,
        tags=["GPU"],
    )
    req = requirements_from_spec(spec, "alice", "belle")
    assert req == Requirements(
        owner="alice",
        group="belle",
        cpu_time=21600,
        sites=("A", "B"),
        banned_sites=("C",),
        platform="el9",
        job_type="User",
        tags=("3GB", "4Processors", "GPU", "MultiProcessor"),
    )


def test_single_core_jobs_share_a_key() -> None:
    one = requirements_from_spec(common_pb2.JobSpec(number_of_processors=1), "a", "g")
    unset = requirements_from_spec(common_pb2.JobSpec(), "a", "g")
    assert one == unset
    assert one.tags == ()


def test_encode_roundtrip_and_garbage() -> None:
    req = Requirements(owner="a", group="g", cpu_time=360, sites=("X",), tags=("1GB",))
    assert decode_requirements(encode_requirements(req)) == req
    with pytest.raises(ValueError, match="undecodable"):
        decode_requirements(b"\xff\x00garbage")


def test_pilot_tags() -> None:
    tags = pilot_tags(Resources(site="S", cores=3, memory_mb=2500, tags=("GPU",)))
    expected = {"1Processors", "2Processors", "3Processors", "MultiProcessor", "1GB", "2GB"}
    assert tags == expected | {"GPU"}
    single = pilot_tags(Resources(site="S", cores=1, memory_mb=1000))
    assert single == {"1Processors"}
