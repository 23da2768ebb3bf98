"""The gateway's links: mutual TLS towards acquirers and issuer hosts, certificates that rotate live.

    acquirers -> gateway   `[tls]`: server certificate reloaded from disk for each new
                           connection (grpc's dynamic server credentials: no restart);
                           client certificates required, chaining to `[tls] ca`
    gateway -> issuers     `[issuer_tls]`: our client certificate, the issuers' CA, and each
                           pool's `server_name` checked; when the files change, every member's
                           channel is rebuilt (grpc Python has no dynamic client credentials),
                           calls in flight finishing on the old one; ISO 8583 members
                           (`iso`) reopen their connections with the new certificate
    any link, plaintext    only with `insecure = true` in its section: a warning at start and
                           every minute (PlaintextWarning)

Days to expiry of each certificate (server, issuer_client, etcd_client, redis_client) are
checked at start and hourly: logged as a warning under 30 days, exported as
`authgw.certificate.days_left{certificate}`.

grpc enforces TLS 1.2 as the minimum (its core's default; grpc Python cannot lower it).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc

from authgw.security import (
    CertificateError,
    CertificateWatcher,
    PlaintextWarning,
    ServerCertificateReloader,
    TlsMaterial,
    TransportSecurity,
    channel_options,
    check_certificate_expiry,
    load_tls_files,
)
from authgw.security import channel_credentials as credentials_of
from authgw.security.server_ssl import client_ssl_context
from authgw.tasks import cancel_and_wait
from gateway.config import GatewayConfig
from gateway.edges.iso8583_issuer import IsoLinks, SentMessages
from gateway.member import CHANNEL_OPTIONS, Connect, plaintext_channel

__all__ = ["Transport"]

log = logging.getLogger("authgw.transport")

_EXPIRY_CHECK_S = 3600.0


class Transport:
    """TLS material of one gateway's links, and what builds its server port and member channels."""

    def __init__(self, cfg: GatewayConfig, *, serving: bool = True) -> None:
        """Reads the certificates (a bad file raises CertificateError naming it, before serving).

        Args:
            serving: False for a process that only calls issuer hosts (`authgw settle`): no
                server certificate read, no warning about the Authorization service.
        """
        security = cfg.security
        if not serving:
            security = replace(security, server=TransportSecurity.plaintext())
        self._server_names = {p.name: p.server_name for p in cfg.pools}
        self._iso_settings = {p.name: p.iso8583 for p in cfg.pools}
        self._sent = SentMessages()  # one per process: a repeat is a repeat whichever host gets it
        self._server: ServerCertificateReloader | None = None
        if security.server.tls is not None:
            self._server = ServerCertificateReloader(load_tls_files(security.server.tls))
        self._issuers: TlsMaterial | None = None
        self._iso_ssl: ssl.SSLContext | None = None
        if security.issuers.tls is not None:
            self._issuers = load_tls_files(security.issuers.tls)
            self._iso_ssl = _client_ssl(self._issuers)
        self._warnings = [PlaintextWarning(security.issuers, "issuer hosts (gateway -> issuers)")]
        if serving:
            self._warnings.append(
                PlaintextWarning(security.server, "Authorization service (acquirers -> gateway)")
            )
        if cfg.etcd_endpoints:
            self._warnings.append(PlaintextWarning(security.etcd, "etcd"))
        self._certificates = _certificate_files(security.server, security.issuers, security.etcd)
        if cfg.standin is not None and cfg.standin.redis.login.security.tls is not None:
            self._certificates["redis_client"] = cfg.standin.redis.login.security.tls.cert
        self.days_left: dict[str, float] = {}
        self._watcher: CertificateWatcher | None = None
        self._expiry: asyncio.Task[None] | None = None

    def add_port(self, server: grpc.aio.Server, listen: str) -> int:
        """Bind the Authorization service's port (TLS unless insecure); 0 when it cannot be bound."""
        if self._server is None:
            return server.add_insecure_port(listen)
        return server.add_secure_port(listen, self._server.credentials())

    def connect(self, pool: str) -> Connect:
        """How the members of `pool` are reached (the pool's server name checked under TLS)."""
        material = self._issuers
        if material is None:
            return plaintext_channel
        name = self._server_names.get(pool) or None
        credentials = credentials_of(material)
        options = channel_options(name, CHANNEL_OPTIONS)

        def open_channel(address: str) -> grpc.aio.Channel:
            return grpc.aio.secure_channel(address, credentials, options=options)

        return open_channel

    def iso(self, pool: str) -> IsoLinks:
        """How the ISO 8583 members of `pool` are reached (`[pools.iso8583]`, our current certificate)."""
        return IsoLinks(self._iso_settings.get(pool), lambda: self._iso_ssl, self._sent)

    async def start(self, on_issuer_certificate: Callable[[], object] | None = None) -> None:
        """Warn about plaintext links, follow our client certificate, check expiries hourly."""
        for warning in self._warnings:
            await warning.start()
        if self._issuers is not None and on_issuer_certificate is not None:

            async def changed(material: TlsMaterial) -> None:
                self._issuers = material
                self._iso_ssl = await asyncio.to_thread(_client_ssl, material)
                log.info(
                    "issuer client certificate changed (serial %x): reconnecting members", material.serial
                )
                result = on_issuer_certificate()
                if asyncio.iscoroutine(result):
                    await result

            self._watcher = CertificateWatcher(self._issuers, changed)
            await self._watcher.start()
        await self._check_expiry()
        self._expiry = asyncio.create_task(self._expiry_loop(), name="certificate-expiry")

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(_EXPIRY_CHECK_S)
            await self._check_expiry()

    async def _check_expiry(self) -> None:
        for label, path in self._certificates.items():
            try:
                self.days_left[label] = await asyncio.to_thread(check_certificate_expiry, path)
            except CertificateError as exc:
                log.warning("cannot read certificate %s: %s", label, exc)

    async def close(self) -> None:
        await cancel_and_wait(self._expiry)
        if self._watcher is not None:
            await self._watcher.close()
        for warning in self._warnings:
            await warning.close()


def _certificate_files(
    server: TransportSecurity, issuers: TransportSecurity, etcd: TransportSecurity
) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for label, security in (("server", server), ("issuer_client", issuers), ("etcd_client", etcd)):
        if security.tls is not None:
            files[label] = security.tls.cert
    return files


def _client_ssl(material: TlsMaterial) -> ssl.SSLContext:
    """The client context of ISO 8583 issuer links (files as just checked by the watcher)."""
    return client_ssl_context(material.files)
