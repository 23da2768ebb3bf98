"""A pool member: one issuer host, its reused gRPC channel, its load and ejection state.

The channel comes from a `Connect` the router is given (gateway/transport.py: mutual TLS
checking the pool's server name, or plaintext by explicit choice). When the gateway's
client certificate is rotated, `reconnect` swaps in a new channel; calls in flight on
the old one finish within a grace period.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.config import OutlierConfig
from gateway.outlier import Ejection

__all__ = ["CHANNEL_OPTIONS", "Connect", "Member", "plaintext_channel"]

# One long-lived HTTP/2 channel per member. gRPC's own retries are off: the
# router decides every retry, within the request's deadline and retry budget.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    ("grpc.http2.max_pings_without_data", 0),
]


Connect = Callable[[str], grpc.aio.Channel]
"""Opens the channel to one member's address (the pool's TLS settings already bound)."""


def plaintext_channel(address: str) -> grpc.aio.Channel:
    """A plaintext channel: for tests and for `[issuer_tls] insecure = true` (development only)."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


class Member:
    """An issuer host inside a pool."""

    __slots__ = ("address", "channel", "ejection", "in_flight", "name", "pool", "stub", "weight")

    def __init__(
        self,
        pool: str,
        name: str,
        address: str,
        weight: int,
        outlier: OutlierConfig,
        *,
        connect: Connect = plaintext_channel,
    ) -> None:
        self.pool = pool
        self.name = name
        self.address = address
        self.weight = max(1, weight)
        self.in_flight = 0
        self.ejection = Ejection(outlier)
        self.channel = connect(address)
        self.stub = pb_grpc.IssuerHostStub(self.channel)
        self.channel.get_state(try_to_connect=True)  # connect now, not on the first customer request

    async def reconnect(self, connect: Connect, grace_s: float = 5.0) -> None:
        """A new channel (e.g. a rotated client certificate); calls on the old one get `grace_s` to finish."""
        old = self.channel
        self.channel = connect(self.address)
        self.stub = pb_grpc.IssuerHostStub(self.channel)
        self.channel.get_state(try_to_connect=True)
        await old.close(grace=grace_s)

    def load(self) -> float:
        """In-flight requests per unit of weight (power-of-two-choices compares this)."""
        return self.in_flight / self.weight

    async def close(self) -> None:
        await self.channel.close(grace=1.0)

    def __repr__(self) -> str:
        return f"Member({self.pool}/{self.name} {self.address})"
