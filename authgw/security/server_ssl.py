"""Mutual-TLS server contexts for asyncio servers (ISO 8583 listeners), certificates reloaded from disk.

grpc has its dynamic server credentials (`server.ServerCertificateReloader`); an asyncio server
takes one `ssl.SSLContext` at `start_server`. `ReloadingServerSsl.context` is that context: its
`sni_callback`, which OpenSSL calls on every ClientHello (with or without SNI), hands the
handshake to the context built from the current files. A `CertificateWatcher` rebuilds that
context when the files change and load (certificate, key of that certificate, CA, all valid); a
change that does not load is logged and the current context kept. Open connections keep theirs.

Client certificates are required and verified against the CA file; TLS 1.2 is the minimum, as
grpc enforces on the gRPC port. `peer_certificate_pem` gives a connection's verified client
certificate in the PEM form `PeerIdentityReader.from_pem` parses (and caches).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from authgw.security.tls import TlsFiles, TlsMaterial
from authgw.security.watcher import CertificateWatcher

__all__ = ["ReloadingServerSsl", "client_ssl_context", "peer_certificate_pem", "server_ssl_context"]

log = logging.getLogger("authgw.security")


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context: our certificate and key, client certificates required and checked against `ca`.

    Reads the files (blocking): call it before the loop runs or through `asyncio.to_thread`.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(files.cert, files.key)
    context.load_verify_locations(cafile=files.ca)
    return context


def client_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """The client side for asyncio links (ISO 8583 issuer hosts): our certificate, the servers' CA.

    The server's certificate is checked against `ca` and the name given at connect time
    (`server_hostname`); TLS 1.2 at least. Reads the files (blocking), like `server_ssl_context`.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context


def peer_certificate_pem(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The peer's verified certificate as PEM bytes, or None (plaintext, or no certificate)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii") if der else None


class ReloadingServerSsl:
    """An asyncio server's SSL context whose certificate, key and client CA follow their files."""

    def __init__(self, material: TlsMaterial, *, interval_s: float = 1.0) -> None:
        """`material`: the files as loaded and checked at start (`load_tls_files`)."""
        self._current = server_ssl_context(material.files)
        self.context = server_ssl_context(material.files)
        self.context.sni_callback = self._select
        self._watcher = CertificateWatcher(material, self._changed, interval_s=interval_s)

    def _select(self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        ssl_object.context = self._current  # the handshake goes on with the current files

    async def _changed(self, material: TlsMaterial) -> None:
        try:
            self._current = await asyncio.to_thread(server_ssl_context, material.files)
        except (OSError, ssl.SSLError) as exc:  # replaced again between the check and this read
            # The message names the file and the problem; a traceback would add nothing.
            cert = material.files.cert
            log.error("server certificate %s not reloaded, keeping the current one: %s", cert, exc)  # noqa: TRY400
            return
        log.info("server certificate %s changed: serial %x", material.files.cert, material.serial)

    async def start(self) -> None:
        """Follow the files (poll their stamps every interval)."""
        await self._watcher.start()

    async def close(self) -> None:
        """Stop following; safe to call twice."""
        await self._watcher.close()
