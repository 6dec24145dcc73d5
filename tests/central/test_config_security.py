"""The [security], [[groups]] and [[users]] sections: defaults, validation, serving checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from central.config import ConfigError, check_serving, config_from_dict, load_config

SECURE = """
[security]
tls_cert = "/etc/gridpilot/server.pem"
tls_key = "/etc/gridpilot/server.key"
tls_client_ca = "/etc/gridpilot/ca.pem"
login_listen = "0.0.0.0:50052"
user_token_lifetime = 3600
max_message_bytes = 1048576

[[security.external_issuers]]
issuer = "https://iam.example.org/"
jwks_file = "/etc/gridpilot/iam.jwks"
audience = "gridpilot"
group_map = { "/belle/users" = "belle_user", "/belle/admins" = "belle_admin" }

[[groups]]
name = "belle_user"
role = "user"
job_sharing = true

[[groups]]
name = "belle_admin"
role = "admin"

[[users]]
name = "alice"
subject = "Alice Example"
groups = ["belle_user", "belle_admin"]

[[users]]
name = "bob"
groups = ["belle_user"]
banned = true
"""


def test_security_sections_load(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    path.write_text(SECURE)
    cfg = load_config(path)
    check_serving(cfg)
    sec = cfg.security
    assert sec.tls_cert == "/etc/gridpilot/server.pem"
    assert sec.user_token_lifetime == 3600
    assert sec.max_message_bytes == 1048576
    assert sec.external_issuers[0].group_map["/belle/users"] == "belle_user"
    assert sec.external_issuers[0].user_claim == "preferred_username"
    assert [g.name for g in cfg.effective_groups()] == ["belle_user", "belle_admin"]
    group = cfg.group("belle_user")
    assert group is not None
    assert group.job_sharing
    alice = cfg.user_by_subject("Alice Example")
    assert alice is not None
    assert alice.name == "alice"
    bob = cfg.user("bob")
    assert bob is not None
    assert bob.cert_subject == "bob"
    assert bob.banned


def test_defaults_are_secure_and_name_the_default_groups() -> None:
    cfg = config_from_dict({})
    sec = cfg.security
    assert not sec.insecure
    assert (sec.issuer, sec.audience) == ("gridpilot", "gridpilot")
    assert sec.registration_token_lifetime == 600
    assert sec.max_message_bytes == 8 * 1024 * 1024
    assert {g.name: g.role for g in cfg.effective_groups()} == {
        "belle_user": "user",
        "belle_production": "production",
        "belle_admin": "admin",
    }


@pytest.mark.parametrize(
    ("security", "missing"),
    [
        ({}, "security.tls_cert is required"),
        ({"tls_cert": "c.pem"}, "security.tls_key is required"),
        (
            {"insecure": True, "login_listen": "127.0.0.1:0"},
            "security.login_listen needs security.tls_cert",
        ),
        (
            {"tls_cert": "c", "tls_key": "k", "login_listen": "127.0.0.1:0"},
            "security.login_listen needs security.tls_client_ca",
        ),
    ],
)
def test_serving_needs_tls_unless_insecure(security: dict[str, Any], missing: str) -> None:
    cfg = config_from_dict({"security": security})  # loading is fine: --insecure may follow
    with pytest.raises(ConfigError, match=missing):
        check_serving(cfg)


def test_insecure_serves_without_tls_files() -> None:
    check_serving(config_from_dict({"security": {"insecure": True}}))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"security": {"pilot_token_lifetime": 0}}, "security.pilot_token_lifetime must be"),
        (
            {"security": {"user_token_lifetime": 10, "max_user_token_lifetime": 5}},
            "user_token_lifetime exceeds",
        ),
        ({"security": {"max_message_bytes": 1000}}, "max_message_bytes must be at least"),
        ({"security": {"token_cache_size": -1}}, "token_cache_size must not be negative"),
        ({"groups": [{"name": "g", "role": "wizard"}]}, "role 'wizard' is not one of"),
        ({"groups": [{"name": "g"}, {"name": "g"}]}, "duplicate group name(s): g"),
        ({"users": [{"name": "a", "groups": ["nope"]}]}, "user 'a': unknown group 'nope'"),
        ({"users": [{"name": "a"}]}, "user 'a' has no groups"),
        (
            {
                "users": [
                    {"name": "a", "subject": "X", "groups": ["belle_user"]},
                    {"name": "b", "subject": "X", "groups": ["belle_user"]},
                ]
            },
            "duplicate user subject(s): X",
        ),
        (
            {
                "security": {
                    "external_issuers": [
                        {
                            "issuer": "https://iam",
                            "jwks_file": "k",
                            "audience": "a",
                            "group_map": {"/x": "ghost"},
                        }
                    ]
                }
            },
            "maps to unknown group 'ghost'",
        ),
        (
            {
                "security": {
                    "external_issuers": [{"issuer": "gridpilot", "jwks_file": "k", "audience": "a"}]
                }
            },
            "issuer 'gridpilot' appears twice",
        ),
    ],
)
def test_security_errors_name_the_problem(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert message in str(err.value)


def test_unknown_security_key_is_named() -> None:
    with pytest.raises(ConfigError, match="tls_certificate"):
        config_from_dict({"security": {"tls_certificate": "x"}})
