"""PEM certificate and key files: read, parse, check; the one place cryptography and OSError enter.

Every failure becomes a `CertificateError` naming the file (or, for bytes a peer
sent, the source) and what is wrong with it, so an operator can fix a bad file
from the message alone. Reading is blocking: callers on an event loop go through
`asyncio.to_thread`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from authgw.security.errors import CertificateError

__all__ = [
    "SubjectNames",
    "check_validity",
    "fingerprint_sha256",
    "is_ca",
    "key_matches",
    "parse_certificate_chain",
    "parse_private_key",
    "read_file",
    "serial_hex",
    "subject_names",
]


def read_file(path: Path) -> bytes:
    """The bytes of `path`, or a CertificateError saying why they cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertificateError(path, f"cannot read: {exc.strerror or exc}") from exc


def parse_certificate_chain(data: bytes, source: Path | str) -> list[x509.Certificate]:
    """Every certificate in PEM `data`, leaf first; `source` names where the bytes came from."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateError(source, f"not a PEM certificate ({exc})") from exc
    if not certs:  # cryptography raises on no certificate today; keep the promise if that changes
        raise CertificateError(source, "no certificate in the file")
    return certs


def parse_private_key(data: bytes, source: Path | str) -> PrivateKeyTypes:
    """The unencrypted private key in PEM `data`."""
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # cryptography's way of saying "this key is encrypted"
        raise CertificateError(source, "the private key is encrypted; give an unencrypted key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(source, f"not a PEM private key ({exc})") from exc


def key_matches(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """True when `key` is the private half of the certificate's public key."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def check_validity(cert: x509.Certificate, source: Path | str, now: dt.datetime) -> None:
    """Raise CertificateError when `now` is outside the certificate's validity period."""
    if now > cert.not_valid_after_utc:
        raise CertificateError(source, f"expired on {cert.not_valid_after_utc.isoformat()}")
    if now < cert.not_valid_before_utc:
        raise CertificateError(source, f"not valid before {cert.not_valid_before_utc.isoformat()}")


def is_ca(cert: x509.Certificate) -> bool:
    """True when the certificate may sign others (BasicConstraints CA:TRUE)."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint of the DER certificate, lowercase hex without separators."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(serial: int) -> str:
    """A serial number as lowercase hex without leading zeros (how the deny list compares them)."""
    return format(serial, "x")


@dataclass(frozen=True, slots=True)
class SubjectNames:
    """Who a certificate names: its subject CN and its subject alternative names by kind."""

    common_name: str | None
    """The subject's first CN (what etcd maps to a user), None when absent."""
    dns_names: tuple[str, ...]
    """SAN dNSName entries, lowercased (DNS names compare case-insensitively)."""
    uris: tuple[str, ...]
    """SAN uniformResourceIdentifier entries as written (SPIFFE IDs are case-sensitive)."""
    ip_addresses: tuple[str, ...]
    """SAN iPAddress entries in their textual form."""


def subject_names(cert: x509.Certificate) -> SubjectNames:
    """The CN and SANs of `cert`; a certificate without a SAN extension has empty tuples."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns else None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return SubjectNames(cn if isinstance(cn, str) else None, (), (), ())
    return SubjectNames(
        common_name=cn if isinstance(cn, str) else None,
        dns_names=tuple(n.lower() for n in san.get_values_for_type(x509.DNSName)),
        uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
        ip_addresses=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
    )
