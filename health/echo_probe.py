"""Probing an ISO 8583 issuer host with an 0800 echo (field 70 = 301), as the gateways' links do.

`EchoProbe` is what `HealthProbe` is for a gRPC host: one long-lived connection, each probe
with its own deadline, mutual TLS with the agent's certificate and the name the host's
certificate must carry (plaintext by explicit choice). A probe passes when the host answers
0810 with 39 = 00 in time; no answer, another code, a refused or broken connection, or a TLS
failure is a failed probe, and the connection is reopened for the next one.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

from authgw.iso8583 import (
    APPROVED,
    Framing,
    Iso8583Error,
    Mux,
    NetworkCode,
    Spec,
    StanSequence,
    network_request,
    open_channel,
)
from authgw.security import TransportSecurity, load_tls_files
from authgw.security.server_ssl import client_ssl_context
from health.probe import ProbeResult

__all__ = ["EchoProbe"]


class EchoProbe:
    """Echoes one ISO 8583 host over a long-lived connection (see the module docstring).

    Args:
        address: host:port of the host's ISO 8583 port.
        timeout_s: deadline of one probe (connecting included).
        security: mutual TLS (files read here), or plaintext by explicit choice (the default).
        server_name: the name the host's certificate must carry (default: the host dialled).
    """

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float,
        security: TransportSecurity | None = None,
        server_name: str | None = None,
        framing: Framing | None = None,
    ) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._timeout_s = timeout_s
        self.security = security or TransportSecurity.plaintext()
        self._ssl: ssl.SSLContext | None = None
        if self.security.tls is not None:
            files = load_tls_files(self.security.tls).files  # a bad file: CertificateError naming it
            self._ssl = client_ssl_context(files)
        self._server_name = server_name
        self._framing = framing or Framing()
        self._spec = Spec()
        self._stans = StanSequence()
        self._mux: Mux | None = None

    async def follow_certificates(self) -> None:
        """No-op: the context is read at start (restart the agent to rotate its probe certificate)."""

    async def check(self) -> ProbeResult:
        """Probe once; never raises for a host that is down, silent, or refusing our TLS."""
        try:
            mux = self._mux or await self._connect()
            probe = network_request(NetworkCode.ECHO, self._stans.next(), datetime.now(UTC))
            reply = await mux.request(probe, self._timeout_s)
        except Iso8583Error as exc:
            await self._drop()
            return ProbeResult(False, f"echo: {exc}")
        code = reply.fields.get(39)
        return ProbeResult(code == APPROVED, f"echo answered {code!r}")

    async def _connect(self) -> Mux:
        channel = await open_channel(
            self._host,
            self._port,
            self._framing,
            connect_timeout_s=self._timeout_s,
            ssl=self._ssl,
            server_hostname=self._server_name,
        )
        self._mux = Mux(channel, self._spec, stans=self._stans)
        await self._mux.start()
        return self._mux

    async def _drop(self) -> None:
        mux, self._mux = self._mux, None
        if mux is not None:
            await mux.close()

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        await self._drop()
