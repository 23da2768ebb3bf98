"""Probing an issuer host with grpc.health.v1.Health/Check, and rise/fall hysteresis.

One failed probe is noise, `fall` consecutive ones are an outage; a host that
failed needs `rise` consecutive good probes before it takes traffic again, so
a flapping host does not flap the membership of every gateway.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
    """

    def __init__(self, address: str, *, timeout_s: float, service: str = "") -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._service = service
        self._channel: grpc.aio.Channel | None = None

    async def check(self) -> ProbeResult:
        """Probe once; never raises for a host that is down, slow or not serving."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._address, options=_PROBE_CHANNEL_OPTIONS)
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
        """Close the channel; safe to call twice."""
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
