"""The CA: files and permissions, refusing to overwrite, and what the certificates say."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from gridpilot.security.ca import (
    certificate_subject,
    init_ca,
    issue_client_cert,
    issue_server_cert,
    load_ca,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_ca_writes_cert_and_private_key(tmp_path: Path) -> None:
    ca_pem = init_ca(tmp_path / "ca", common_name="Belle CA", days=30)
    assert ca_pem == tmp_path / "ca" / "ca.pem"
    assert _mode(ca_pem) == 0o644
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600
    cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    assert certificate_subject(ca_pem.read_bytes()) == "Belle CA"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 29 < lifetime.days <= 30


def test_init_ca_refuses_to_overwrite(tmp_path: Path) -> None:
    init_ca(tmp_path)
    before = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        init_ca(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == before


def test_server_cert_has_every_host_and_server_usage(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    cert_path, key_path = issue_server_cert(
        tmp_path / "ca", tmp_path / "out", ["central.example", "localhost", "127.0.0.1", "::1"]
    )
    assert (cert_path.name, key_path.name) == ("server.pem", "server.key")
    assert _mode(key_path) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["central.example", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ca = load_ca(tmp_path / "ca")
    cert.verify_directly_issued_by(ca.certificate)


def test_client_cert_names_its_subject(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    cert_path, key_path = issue_client_cert(tmp_path / "ca", tmp_path / "out", "director/KEK 1")
    assert cert_path.name == "director_KEK_1.pem"
    assert _mode(key_path) == 0o600
    assert certificate_subject(cert_path.read_bytes()) == "director/KEK 1"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_certificates_never_outlive_the_ca(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca", days=10)
    cert_path, _ = issue_client_cert(tmp_path / "ca", tmp_path / "out", "x", days=365)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.not_valid_after_utc <= load_ca(tmp_path / "ca").certificate.not_valid_after_utc


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no CA in"):
        issue_server_cert(tmp_path / "missing", tmp_path / "out", ["localhost"])
    init_ca(tmp_path / "ca")
    with pytest.raises(ValueError, match="at least one host"):
        issue_server_cert(tmp_path / "ca", tmp_path / "out", [])
    with pytest.raises(ValueError, match="non-empty common name"):
        issue_client_cert(tmp_path / "ca", tmp_path / "out", " ")
    with pytest.raises(ValueError, match="at least one day"):
        init_ca(tmp_path / "ca2", days=0)
