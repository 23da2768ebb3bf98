"""TLS settings: files checked at start with errors naming the file; plaintext only by explicit choice."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
from test_security_support import files, make_certs

from authgw.security import (
    CertificateError,
    ClosedError,
    PlaintextWarning,
    SettingsError,
    TlsFiles,
    TransportSecurity,
    load_tls_files,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development CA tree for the module."""
    return make_certs(tmp_path_factory.mktemp("security-tls"))


@pytest.fixture
def good(certs: Path, tmp_path: Path) -> TlsFiles:
    """A private copy of ACQ001's files that a test may spoil."""
    for name in ("acquirer-ACQ001.crt", "acquirer-ACQ001.key", "ca.crt"):
        shutil.copyfile(certs / name, tmp_path / name)
    return files(tmp_path, "acquirer-ACQ001")


def test_good_files_load(good: TlsFiles) -> None:
    """A matching certificate, key and CA load; the material carries the leaf's serial."""
    material = load_tls_files(good)
    assert material.leaf.subject.rfc4514_string() == "CN=ACQ001"
    assert material.serial == material.leaf.serial_number


def test_material_repr_hides_the_private_key(good: TlsFiles) -> None:
    """Logging a TlsMaterial never prints the key."""
    material = load_tls_files(good)
    assert b"PRIVATE KEY" in material.key_pem
    assert "PRIVATE KEY" not in repr(material)


@pytest.mark.parametrize(
    ("spoil", "which", "problem"),
    [
        ("missing key", "key", "cannot read"),
        ("garbage cert", "cert", "not a PEM certificate"),
        ("garbage key", "key", "not a PEM private key"),
        ("key of another certificate", "key", "does not match the certificate"),
        ("expired certificate", "cert", "expired on"),
        ("leaf as CA", "ca", "is not a CA"),
    ],
)
def test_bad_files_are_named(certs: Path, good: TlsFiles, spoil: str, which: str, problem: str) -> None:
    """Each kind of bad file fails the load with an error naming that file and the problem."""
    if spoil == "missing key":
        good.key.unlink()
    elif spoil.startswith("garbage"):
        getattr(good, which).write_bytes(b"hello\n")
    elif spoil == "key of another certificate":
        shutil.copyfile(certs / "acquirer-ACQ002.key", good.key)
    elif spoil == "expired certificate":
        shutil.copyfile(certs / "expired-acquirer-ACQ001.crt", good.cert)
        shutil.copyfile(certs / "expired-acquirer-ACQ001.key", good.key)
    else:
        shutil.copyfile(certs / "acquirer-ACQ002.crt", good.ca)
    with pytest.raises(CertificateError) as caught:
        load_tls_files(good)
    assert caught.value.path == str(getattr(good, which))
    assert problem in caught.value.problem


def test_plaintext_needs_an_explicit_choice(good: TlsFiles) -> None:
    """Without files and without insecure=True there is no TransportSecurity; both at once is refused too."""
    with pytest.raises(SettingsError, match="tls: no certificate"):
        TransportSecurity()
    with pytest.raises(SettingsError, match="insecure: is true but TLS files"):
        TransportSecurity(tls=good, insecure=True)
    assert TransportSecurity.plaintext().insecure
    assert TransportSecurity.mutual_tls(good).tls == good


async def test_plaintext_warning_repeats_until_closed(caplog: pytest.LogCaptureFixture) -> None:
    """An insecure link warns at start and every interval; after close it stops."""
    warning = PlaintextWarning(TransportSecurity.plaintext(), "gateway listener", interval_s=0.02)
    with caplog.at_level(logging.WARNING, logger="authgw.security"):
        await warning.start()
        assert len(caplog.records) == 1  # at once, not after the first interval
        await asyncio.sleep(0.1)
        await warning.close()
        count = len(caplog.records)
        await asyncio.sleep(0.06)
    assert count >= 3
    assert len(caplog.records) == count
    assert "PLAINTEXT: gateway listener" in caplog.records[0].getMessage()
    with pytest.raises(ClosedError):
        await warning.start()


async def test_plaintext_warning_is_silent_with_tls(good: TlsFiles, caplog: pytest.LogCaptureFixture) -> None:
    """A TLS link logs nothing."""
    with caplog.at_level(logging.WARNING, logger="authgw.security"):
        async with PlaintextWarning(TransportSecurity.mutual_tls(good), "issuer link", interval_s=0.01):
            await asyncio.sleep(0.05)
    assert caplog.records == []
