"""Days to expiry of a certificate file, and the warning below a threshold."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from cryptography import x509

from authgw.security import CertificateError, certificate_days_left, check_certificate_expiry
from authgw.security.devca import Authority, LeafSpec, write_file


@pytest.fixture(scope="module")
def cert_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dt.datetime]:
    """A certificate file and its notAfter."""
    issued = Authority.create("expiry test CA").issue(LeafSpec("x", "x.test", "server", dns=("x.test",)))
    path = tmp_path_factory.mktemp("security-expiry") / "x.crt"
    write_file(path, issued.cert_pem, 0o644)
    return path, x509.load_pem_x509_certificate(issued.cert_pem).not_valid_after_utc


def test_days_left_counts_from_now(cert_file: tuple[Path, dt.datetime]) -> None:
    """Ten and a half days before notAfter, 10.5 days are left; after it, the count is negative."""
    path, not_after = cert_file
    assert certificate_days_left(path, now=not_after - dt.timedelta(days=10, hours=12)) == pytest.approx(10.5)
    assert certificate_days_left(path, now=not_after + dt.timedelta(days=2)) == pytest.approx(-2.0)


def test_warning_only_below_threshold(
    cert_file: tuple[Path, dt.datetime], caplog: pytest.LogCaptureFixture
) -> None:
    """Above the threshold nothing is logged; below it a warning; once expired an error."""
    path, not_after = cert_file
    with caplog.at_level(logging.INFO, logger="authgw.security"):
        check_certificate_expiry(path, warn_below_days=30, now=not_after - dt.timedelta(days=31))
        assert caplog.records == []
        check_certificate_expiry(path, warn_below_days=30, now=not_after - dt.timedelta(days=29))
        check_certificate_expiry(path, warn_below_days=30, now=not_after + dt.timedelta(days=1))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.ERROR]
    assert "expires in 29.0 days" in caplog.records[0].getMessage()


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    """A missing file is a CertificateError naming it."""
    with pytest.raises(CertificateError, match=r"missing\.crt: cannot read"):
        certificate_days_left(tmp_path / "missing.crt")
