"""A small certificate authority for gridpilot's TLS: central's server certificate, and
client certificates for hosts that authenticate by certificate (site directors, services).

Keys are EC P-256 (ECDSA with SHA-256): BoringSSL inside grpcio accepts them everywhere, for
both the server and the client side of a handshake. The CA key never leaves `ca_dir`.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridpilot.logs import get_logger
from gridpilot.security.files import PRIVATE_MODE, PUBLIC_MODE, write_file_atomic, write_new_file

log = get_logger(__name__)

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
# Certificates start a little in the past so a host whose clock lags still accepts them.
_BACKDATE = timedelta(minutes=5)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def init_ca(directory: Path, *, common_name: str = "gridpilot CA", days: int = 3650) -> Path:
    """Create a new CA in `directory` (ca.pem 0644, ca.key 0600); returns the ca.pem path."""
    if days <= 0:
        raise ValueError(f"CA validity must be at least one day, got {days}")
    cert_path = directory / CA_CERT_NAME
    key_path = directory / CA_KEY_NAME
    for path in (cert_path, key_path):
        if path.exists():
            raise FileExistsError(
                f"a CA already exists in {directory} ({path.name}); refusing to overwrite it "
                "(every certificate it signed would stop being trusted)"
            )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    # The key first: a ca.pem without its key would block a retry with FileExistsError.
    write_new_file(key_path, _private_pem(key), PRIVATE_MODE)
    write_new_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)
    log.info("ca.created", directory=str(directory), common_name=common_name, days=days)
    return cert_path


def load_ca(ca_dir: Path) -> CertificateAuthority:
    """The CA certificate and key from `ca_dir`, with a clear error when they are missing."""
    cert_path = ca_dir / CA_CERT_NAME
    key_path = ca_dir / CA_KEY_NAME
    if not cert_path.is_file() or not key_path.is_file():
        raise FileNotFoundError(
            f"no CA in {ca_dir} (expected {CA_CERT_NAME} and {CA_KEY_NAME}; "
            "create one with 'gridpilot admin ca init --dir DIR')"
        )
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    if key.public_key() != certificate.public_key():
        raise ValueError(f"{key_path} does not belong to {cert_path}")
    return CertificateAuthority(certificate=certificate, key=key)


def issue_server_cert(
    ca_dir: Path, out_dir: Path, hosts: list[str], *, name: str = "server", days: int = 825
) -> tuple[Path, Path]:
    """Sign a server certificate valid for every host (DNS names or IP addresses).

    Writes `out_dir/<name>.pem` and `out_dir/<name>.key` (0600), replacing an older pair so a
    renewal is one command; returns (certificate path, key path).
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or IP address")
    names: list[x509.GeneralName] = [_general_name(host) for host in hosts]
    return _issue(
        ca_dir,
        out_dir,
        file_name=_file_name(name),
        common_name=hosts[0],
        days=days,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        alt_names=names,
    )


def issue_client_cert(
    ca_dir: Path, out_dir: Path, common_name: str, *, days: int = 365
) -> tuple[Path, Path]:
    """Sign a client certificate whose CN is the identity central sees through mTLS.

    Writes `out_dir/<cn>.pem` and `out_dir/<cn>.key` (0600; unsafe characters of the CN become
    '_' in the file names); returns (certificate path, key path).
    """
    if not common_name.strip():
        raise ValueError("a client certificate needs a non-empty common name")
    return _issue(
        ca_dir,
        out_dir,
        file_name=_file_name(common_name),
        common_name=common_name,
        days=days,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        alt_names=[],
    )


def certificate_subject(pem: bytes) -> str:
    """The subject common name (CN) of a PEM certificate."""
    certificate = x509.load_pem_x509_certificate(pem)
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        raise ValueError("the certificate has no common name (CN) in its subject")
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def _issue(
    ca_dir: Path,
    out_dir: Path,
    *,
    file_name: str,
    common_name: str,
    days: int,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName],
) -> tuple[Path, Path]:
    if days <= 0:
        raise ValueError(f"certificate validity must be at least one day, got {days}")
    ca = load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    # A certificate outliving its CA would fail verification anyway; say so up front instead.
    not_after = min(now + timedelta(days=days), ca.certificate.not_valid_after_utc)
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    certificate = builder.sign(ca.key, hashes.SHA256())
    cert_path = out_dir / f"{file_name}.pem"
    key_path = out_dir / f"{file_name}.key"
    write_file_atomic(key_path, _private_pem(key), PRIVATE_MODE)
    write_file_atomic(cert_path, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)
    log.info(
        "ca.issued",
        common_name=common_name,
        usage=usage.dotted_string,
        serial=format(certificate.serial_number, "x"),
        not_after=not_after.isoformat(),
        path=str(cert_path),
    )
    return cert_path, key_path


def _general_name(host: str) -> x509.GeneralName:
    host = host.strip()
    if not host:
        raise ValueError("empty host name")
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _file_name(name: str) -> str:
    safe = _SAFE_NAME.sub("_", name.strip()).strip(".")
    if not safe:
        raise ValueError(f"cannot make a file name from {name!r}")
    return safe


def _serial() -> int:
    # RFC 5280: positive, at most 20 octets; 159 random bits leave the top bit clear.
    return secrets.randbits(159) | 1


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
