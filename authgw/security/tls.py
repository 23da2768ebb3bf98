"""TLS settings of one link: the files it uses, checked at start, and plaintext only by explicit choice.

Every link of the fleet is mutual TLS (DESIGN.md, "Trust boundaries"). A link's
`TransportSecurity` holds either the `TlsFiles` it uses or `insecure=True`;
nothing else turns TLS off, and an insecure link is announced by a
`PlaintextWarning` at start and every minute after, so a development switch left
on in production shows in every log window.

`load_tls_files` reads and checks the three files once (certificate parses and
is valid now, key is the certificate's, CA file holds CA certificates); its
errors name the file. It blocks on disk: call it before the loop runs or through
`asyncio.to_thread`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from authgw.security._tasks import Periodic
from authgw.security.errors import CertificateError, SettingsError
from authgw.security.filestamp import FileStamp, stamp_files
from authgw.security.pemfile import (
    check_validity,
    is_ca,
    key_matches,
    parse_certificate_chain,
    parse_private_key,
    read_file,
)

__all__ = ["PlaintextWarning", "TlsFiles", "TlsMaterial", "TransportSecurity", "load_tls_files"]

log = logging.getLogger("authgw.security")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where one side of a mutual-TLS link finds its certificate, its key and the peer's CA."""

    cert: Path
    """Our certificate chain, PEM, leaf first."""
    key: Path
    """The unencrypted PEM private key of `cert` (keep it mode 0600)."""
    ca: Path
    """PEM CA certificate(s) that sign the PEER: client CAs on a server, server CAs on a client."""

    def paths(self) -> tuple[Path, Path, Path]:
        """The three files, in the order watchers stat them."""
        return (self.cert, self.key, self.ca)


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The checked contents of a `TlsFiles`: what grpc and the watchers hand around."""

    files: TlsFiles
    """Where these bytes were read from."""
    cert_chain_pem: bytes
    """Our certificate chain as read."""
    key_pem: bytes = field(repr=False)
    """Our private key as read; kept out of repr so it never reaches a log line."""
    ca_pem: bytes
    """The peer's CA certificates as read."""
    leaf: x509.Certificate
    """Our parsed leaf certificate (serial, expiry, names)."""
    stamps: tuple[FileStamp, ...]
    """The files' stamps taken just BEFORE reading them: a watcher starting from these misses no change."""

    @property
    def serial(self) -> int:
        """Serial number of our leaf certificate."""
        return self.leaf.serial_number

    @property
    def not_after(self) -> dt.datetime:
        """When our leaf certificate expires (UTC)."""
        return self.leaf.not_valid_after_utc


def load_tls_files(files: TlsFiles, *, now: dt.datetime | None = None) -> TlsMaterial:
    """Read and check `files`; raise CertificateError naming the first file that is unusable."""
    now = now or dt.datetime.now(dt.UTC)
    stamps = stamp_files(files.paths())
    cert_pem = read_file(files.cert)
    leaf = parse_certificate_chain(cert_pem, files.cert)[0]
    check_validity(leaf, files.cert, now)
    key_pem = read_file(files.key)
    if not key_matches(leaf, parse_private_key(key_pem, files.key)):
        raise CertificateError(files.key, f"does not match the certificate in {files.cert}")
    ca_pem = read_file(files.ca)
    for ca in parse_certificate_chain(ca_pem, files.ca):
        if not is_ca(ca):
            raise CertificateError(files.ca, f"{ca.subject.rfc4514_string()} is not a CA (no CA:TRUE)")
        check_validity(ca, files.ca, now)
    return TlsMaterial(
        files=files, cert_chain_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem, leaf=leaf, stamps=stamps
    )


@dataclass(frozen=True, slots=True)
class TransportSecurity:
    """How one link is protected: mutual TLS with `tls`, or plaintext when (and only when) `insecure`."""

    tls: TlsFiles | None = None
    """Our certificate, key and the peer's CA; required unless `insecure` is True."""
    insecure: bool = False
    """Plaintext, for development only; the one way to turn TLS off. Logs a warning every minute."""

    def __post_init__(self) -> None:
        if self.insecure and self.tls is not None:
            raise SettingsError("insecure", "is true but TLS files are given too", "drop one of the two")
        if not self.insecure and self.tls is None:
            raise SettingsError(
                "tls",
                "no certificate, key and CA given",
                "give tls files, or insecure = true for development",
            )

    @classmethod
    def mutual_tls(cls, files: TlsFiles) -> TransportSecurity:
        """Mutual TLS with `files`."""
        return cls(tls=files)

    @classmethod
    def plaintext(cls) -> TransportSecurity:
        """Plaintext (development only)."""
        return cls(insecure=True)


class PlaintextWarning:
    """A loud warning while a link runs in plaintext: at start, then every `interval_s` until close.

    An owned task rather than a call the owner repeats, so that no owner can
    forget the repeat; for a link with TLS, start and close do nothing.
    """

    def __init__(
        self,
        security: TransportSecurity,
        link: str,
        *,
        interval_s: float = 60.0,
        logger: logging.Logger = log,
    ) -> None:
        self._security = security
        self._link = link
        self._log = logger
        self._repeat = Periodic(self._warn, interval_s, f"plaintext warning {link}")

    async def start(self) -> None:
        """Warn now, and start repeating the warning (only when the link is insecure)."""
        self._repeat.check_open()
        if self._security.insecure and not self._repeat.running:
            await self._warn()
            self._repeat.start()

    async def close(self) -> None:
        """Stop repeating; safe to call twice."""
        await self._repeat.close()

    async def __aenter__(self) -> PlaintextWarning:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _warn(self) -> None:
        self._log.warning(
            "PLAINTEXT: %s runs without TLS (insecure = true): peers are not authenticated and "
            "card data travels in clear; development only",
            self._link,
        )
