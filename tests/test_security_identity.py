"""Peer identities from certificates, and the allowlist that maps an identity to its acquirer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from test_security_support import ACQ001_URI, ACQ002_URI, make_certs

from authgw.security import AccessDenied, Allowlist, PeerIdentity, PeerIdentityReader, SettingsError
from authgw.security.devca import Authority, LeafSpec


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development CA tree for the module."""
    return make_certs(tmp_path_factory.mktemp("security-identity"))


@pytest.fixture(scope="module")
def acq1(certs: Path) -> PeerIdentity:
    """ACQ001's identity."""
    return PeerIdentityReader().from_pem((certs / "acquirer-ACQ001.crt").read_bytes())


class FakeContext:
    """Only auth_context(), shaped as grpc gives it; the real one is exercised in test_security_server."""

    def __init__(self, auth: Mapping[str, Iterable[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        return self._auth


def test_identity_reads_sans_cn_serial_and_fingerprint(certs: Path) -> None:
    """URI and DNS SANs, the CN, the serial and the SHA-256 fingerprint match the certificate."""
    pem = (certs / "gateway.crt").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    identity = PeerIdentityReader().from_pem(pem)
    assert identity.dns_names == ("gateway.authgw.test", "localhost")
    assert identity.uris == ()
    assert identity.common_name == "gateway.authgw.test"
    assert identity.serial == cert.serial_number
    assert identity.serial_hex == format(cert.serial_number, "x")
    assert identity.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()


def test_reader_parses_each_certificate_once(certs: Path) -> None:
    """Equal PEM bytes (a new bytes object per call, as grpc gives them) return the cached identity."""
    reader = PeerIdentityReader()
    pem = (certs / "acquirer-ACQ001.crt").read_bytes()
    first = reader.from_context(FakeContext({"x509_pem_cert": [pem]}))
    again = reader.from_context(FakeContext({"x509_pem_cert": [bytes(bytearray(pem))]}))
    assert first is not None
    assert first is again
    assert first.uris == (ACQ001_URI,)


def test_no_certificate_means_no_identity() -> None:
    """A plaintext context (no x509_pem_cert) has no identity."""
    assert PeerIdentityReader().from_context(FakeContext({"transport_security_type": [b"insecure"]})) is None


def test_allowlist_maps_identity_to_its_acquirer(acq1: PeerIdentity) -> None:
    """ACQ001's certificate may act as ACQ001 and the decision says so."""
    decision = Allowlist({ACQ001_URI: "ACQ001", ACQ002_URI: "ACQ002"}).check(acq1, "ACQ001")
    assert decision.allowed
    assert decision.acquirer_id == "ACQ001"
    decision.require()


def test_allowlist_denies_acting_as_another_acquirer(acq1: PeerIdentity) -> None:
    """ACQ001's certificate sending ACQ002's request is denied, naming both."""
    decision = Allowlist({ACQ001_URI: "ACQ001", ACQ002_URI: "ACQ002"}).check(acq1, "ACQ002")
    assert not decision.allowed
    assert ACQ001_URI in decision.reason
    assert "may act as ACQ001, not as 'ACQ002'" in decision.reason
    with pytest.raises(AccessDenied, match="not as 'ACQ002'"):
        decision.require()


def test_allowlist_denies_unknown_and_missing_identities(acq1: PeerIdentity) -> None:
    """An identity not listed, or no identity at all, is denied with the reason."""
    only_acq2 = Allowlist({ACQ002_URI: "ACQ002"})
    assert "not in the allowlist" in only_acq2.check(acq1, "ACQ001").reason
    assert not only_acq2.check(acq1, "ACQ001").allowed
    missing = only_acq2.check(None, "ACQ002")
    assert not missing.allowed
    assert "no client certificate" in missing.reason


def test_allowlist_matches_dns_names_case_insensitively(certs: Path) -> None:
    """A DNS-name entry matches the certificate's SAN whatever the case in the config."""
    identity = PeerIdentityReader().from_pem((certs / "gateway.crt").read_bytes())
    assert Allowlist({"Gateway.AuthGW.test": "GW"}).check(identity, "GW").allowed


def test_certificate_naming_two_acquirers_is_denied(certs: Path) -> None:
    """A certificate whose SANs map to two acquirers is ambiguous, so denied."""
    spec = LeafSpec("both", "both", "client", uris=(ACQ001_URI, ACQ002_URI))
    issued = Authority.load(certs / "ca.crt", certs / "ca.key").issue(spec)
    identity = PeerIdentityReader().from_pem(issued.cert_pem)
    decision = Allowlist({ACQ001_URI: "ACQ001", ACQ002_URI: "ACQ002"}).check(identity, "ACQ001")
    assert not decision.allowed
    assert "several acquirers" in decision.reason


@pytest.mark.parametrize(
    "entries",
    [{"not a name!": "ACQ001"}, {ACQ001_URI: ""}, {"a.test": "X", "A.test": "Y"}],
    ids=["bad name", "no acquirer", "listed twice"],
)
def test_allowlist_refuses_bad_entries(entries: dict[str, str]) -> None:
    """Entries that are not a SAN, have no acquirer, or contradict another are settings errors."""
    with pytest.raises(SettingsError, match="allowlist"):
        Allowlist(entries)
