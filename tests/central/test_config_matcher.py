"""The [matcher] section: parsing into the matcher's policy and validation messages."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from central.config import ConfigError, config_from_dict
from central.logic.matching import matcher_policy
from central.matcher.policy import MatchingDelay, RunningLimit

BASE = """
[[sites]]
name = "S1"
"""

MATCHER = """
[matcher]
sharing_groups = ["belle_production"]

[matcher.group_shares]
belle_user = 3000
belle_production = 1000

[[matcher.running_limits]]
site = "S1"
attribute = "JobType"
value = "User"
limit = 5

[[matcher.matching_delays]]
site = "S1"
attribute = "Owner"
value = "alice"
seconds = 2.5
"""


def _load(text: str) -> Any:
    return config_from_dict(tomllib.loads(BASE + text))


def test_matcher_section_becomes_the_matcher_policy() -> None:
    policy = matcher_policy(_load(MATCHER).matcher)
    assert policy.group_shares == {"belle_user": 3000.0, "belle_production": 1000.0}
    assert policy.sharing_groups == frozenset({"belle_production"})
    assert policy.running_limits == [
        RunningLimit(site="S1", attribute="JobType", value="User", limit=5)
    ]
    assert policy.matching_delays == [
        MatchingDelay(site="S1", attribute="Owner", value="alice", seconds=2.5)
    ]
    assert policy.share("unlisted") == 1000.0


def test_default_matcher_section_is_an_empty_policy() -> None:
    policy = matcher_policy(_load("").matcher)
    assert policy.running_limits == []
    assert policy.group_shares == {}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            MATCHER.replace('"S1"\nattribute = "JobType"', '"S9"\nattribute = "JobType"'),
            "matcher.running_limits[0]: unknown site 'S9'",
        ),
        (MATCHER.replace('"JobType"', '"Colour"'), "attribute 'Colour' is not one of"),
        (MATCHER.replace("limit = 5", "limit = -1"), "limit must not be negative"),
        (MATCHER.replace("seconds = 2.5", "seconds = 0"), "seconds must be positive"),
        (MATCHER.replace("belle_user = 3000", "nobody = 3000"), "unknown group 'nobody'"),
        (MATCHER.replace("belle_user = 3000", "belle_user = -3"), "must not be negative"),
        (MATCHER.replace('value = "alice"', 'value = ""'), "value is empty"),
        (
            MATCHER + '\n[[matcher.running_limits]]\nsite = "S1"\nattribute = "JobType"\n'
            'value = "User"\nlimit = 1\n',
            "duplicate rule",
        ),
        (MATCHER.replace("[matcher]", "[matcher]\nspeed = 3"), "unknown field"),
    ],
)
def test_invalid_matcher_section_is_refused_with_a_clear_message(bad: str, message: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        _load(bad)
    assert message in str(err.value)
