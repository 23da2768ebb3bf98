"""Probing an issuer host with grpc.health.v1.Health/Check, and rise/fall hysteresis.

One failed probe is noise, `fall` consecutive ones are an outage; a host that
failed needs `rise` consecutive good probes before it takes traffic again, so
a flapping host does not flap the membership of every gateway.

The probe speaks to the issuer host as the gateways do: mutual TLS, our client
certificate (the agent's), the issuers' CA, and the name the host's certificate
must carry (`server_name`; with one CA for the whole fleet, a bare IP check would
let any server of the fleet answer for the host). A TLS failure is a failed
probe: a host the gateways could not reach safely is not registered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authgw.security import (
    CertificateWatcher,
    TlsMaterial,
    TransportSecurity,
    load_tls_files,
    secure_channel,
)

__all__ = ["HealthProbe", "ProbeResult", "RiseFall", "Transition"]

# Reconnect within about one probe interval once the host is back: gRPC's default
# backoff would keep failing probes fast for up to two minutes after a restart.
_PROBE_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe: `detail` says why it failed, for the log line."""

    ok: bool
    detail: str


class HealthProbe:
    """Calls Health/Check on one host over a long-lived channel, each call with its own deadline.

    Args:
        address: host:port of the issuer host.
        timeout_s: deadline of one probe.
        service: the service name to ask about ("" means the whole server).
        security: mutual TLS (our certificate, the issuers' CA; files read here, a
            CertificateError names a bad one), or plaintext by explicit choice (the default
            of this class; `authgw health-agent` requires the choice on its command line).
        server_name: the name the host's certificate must carry (default: the host dialled).
    """

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float,
        service: str = "",
        security: TransportSecurity | None = None,
        server_name: str | None = None,
    ) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._service = service
        self.security = security or TransportSecurity.plaintext()
        self._material = None if self.security.tls is None else load_tls_files(self.security.tls)
        self._server_name = server_name
        self._certificates: CertificateWatcher | None = None
        self._channel: grpc.aio.Channel | None = None

    async def follow_certificates(self) -> None:
        """Reopen the channel when our certificate files change (no-op in plaintext)."""
        if self._material is None or self._certificates is not None:
            return

        async def changed(material: TlsMaterial) -> None:
            self._material = material
            channel, self._channel = self._channel, None  # the next probe opens a new one
            if channel is not None:
                await channel.close(grace=self._timeout_s)

        self._certificates = CertificateWatcher(self._material, changed)
        await self._certificates.start()

    def _open(self) -> grpc.aio.Channel:
        if self._material is None:
            return grpc.aio.insecure_channel(self._address, options=_PROBE_CHANNEL_OPTIONS)
        return secure_channel(
            self._address,
            self._material,
            server_name=self._server_name,
            options=_PROBE_CHANNEL_OPTIONS,
        )

    async def check(self) -> ProbeResult:
        """Probe once; never raises for a host that is down, slow, not serving or refusing our TLS."""
        if self._channel is None:
            self._channel = self._open()
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=self._service), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            return ProbeResult(False, f"{exc.code().name}: {exc.details()}")
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return ProbeResult(status == "SERVING", status)

    async def close(self) -> None:
        """Close the channel and stop following the certificate files; safe to call twice."""
        if self._certificates is not None:
            await self._certificates.close()
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()


class Transition(enum.Enum):
    UP = "up"
    DOWN = "down"


class RiseFall:
    """Counts consecutive probe results; reports UP after `rise` good ones, DOWN after `fall` bad ones.

    A host starts down: it must pass `rise` probes before it is first registered.
    """

    def __init__(self, *, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be >= 1, got rise={rise} fall={fall}")
        self._rise = rise
        self._fall = fall
        self._up = False
        self._streak = 0  # consecutive results that contradict the current state

    @property
    def up(self) -> bool:
        return self._up

    @property
    def streak(self) -> int:
        return self._streak

    def observe(self, ok: bool) -> Transition | None:
        """Record one probe result; return the transition it completes, if any."""
        if ok == self._up:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < (self._rise if ok else self._fall):
            return None
        self._up, self._streak = ok, 0
        return Transition.UP if ok else Transition.DOWN
