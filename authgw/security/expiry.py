"""Days until a certificate expires: for a gauge, and a warning before it is too late.

Reading the file blocks: owners on an event loop call `check_certificate_expiry`
through `asyncio.to_thread`, at start and then, say, hourly, and export the
result as a gauge (`authgw_certificate_days_left{file=...}`).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from cryptography import x509

from authgw.security.pemfile import parse_certificate_chain, read_file

__all__ = ["certificate_days_left", "check_certificate_expiry", "days_to_expiry"]

log = logging.getLogger("authgw.security")

_SECONDS_PER_DAY = 86_400.0


def days_to_expiry(cert: x509.Certificate, *, now: dt.datetime | None = None) -> float:
    """Days (fractional) until `cert` expires; negative once it has."""
    now = now or dt.datetime.now(dt.UTC)
    return (cert.not_valid_after_utc - now).total_seconds() / _SECONDS_PER_DAY


def certificate_days_left(path: Path, *, now: dt.datetime | None = None) -> float:
    """Days until the leaf certificate in `path` expires (CertificateError if unreadable)."""
    return days_to_expiry(parse_certificate_chain(read_file(path), path)[0], now=now)


def check_certificate_expiry(
    path: Path, *, warn_below_days: float = 30.0, now: dt.datetime | None = None
) -> float:
    """Days left for the certificate in `path`; logs a warning below the threshold, an error once expired."""
    days = certificate_days_left(path, now=now)
    if days < 0:
        log.error("certificate %s EXPIRED %.1f days ago", path, -days)
    elif days < warn_below_days:
        log.warning("certificate %s expires in %.1f days (renew before %.0f)", path, days, warn_below_days)
    return days
