"""A pool member: one issuer host, its reused link (gRPC channel or ISO 8583 connections), load, ejection.

A gRPC member's channel comes from a `Connect` the router is given (gateway/transport.py:
mutual TLS checking the pool's server name, or plaintext by explicit choice). An ISO 8583
member (`protocol = "iso8583"`) keeps persistent connections instead (`IssuerLink`, opened
by the pool's `IsoLinks`) behind a stub with the gRPC stub's methods, so the router and the
settlement sender call both alike; when one of its connections leaves an echo unanswered,
`on_failed` is told (the pool ejects the member). When the gateway's client certificate is
rotated, `reconnect` swaps in a new channel (calls in flight on the old one finish within a
grace period) or reopens the ISO 8583 connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.config import GRPC, ISO8583, OutlierConfig
from gateway.edges.iso8583_issuer import IsoLinks
from gateway.edges.iso8583_issuer_link import IssuerLink
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

    __slots__ = (
        "address", "channel", "ejection", "in_flight", "link", "name", "on_failed", "pool", "protocol",
        "stub", "weight",
    )  # fmt: skip

    def __init__(
        self,
        pool: str,
        name: str,
        address: str,
        weight: int,
        outlier: OutlierConfig,
        *,
        connect: Connect = plaintext_channel,
        protocol: str = GRPC,
        iso: IsoLinks | None = None,
        on_failed: Callable[[Member, str], None] = lambda _member, _reason: None,
    ) -> None:
        self.pool = pool
        self.name = name
        self.address = address
        self.protocol = protocol
        self.weight = max(1, weight)
        self.in_flight = 0
        self.ejection = Ejection(outlier)
        self.on_failed = on_failed
        self.channel: grpc.aio.Channel | None = None
        self.link: IssuerLink | None = None
        self.stub: Any  # pb_grpc.IssuerHostStub, or IsoIssuerStub with the same methods
        if protocol == ISO8583:
            self.link, self.stub = (iso or IsoLinks()).open(
                address, lambda reason: self.on_failed(self, reason)
            )
            self.link.start()  # connect now, not on the first customer request
        else:
            self.channel = connect(address)
            self.stub = pb_grpc.IssuerHostStub(self.channel)
            self.channel.get_state(try_to_connect=True)

    async def reconnect(self, connect: Connect, grace_s: float = 5.0) -> None:
        """A new channel (e.g. a rotated client certificate); calls on the old one get `grace_s` to finish."""
        if self.link is not None:
            await self.link.reconnect()  # the next connections take the current certificate
            return
        old = self.channel
        self.channel = connect(self.address)
        self.stub = pb_grpc.IssuerHostStub(self.channel)
        self.channel.get_state(try_to_connect=True)
        if old is not None:
            await old.close(grace=grace_s)

    def load(self) -> float:
        """In-flight requests per unit of weight (power-of-two-choices compares this)."""
        return self.in_flight / self.weight

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()
        if self.channel is not None:
            await self.channel.close(grace=1.0)

    def __repr__(self) -> str:
        return f"Member({self.pool}/{self.name} {self.protocol}://{self.address})"
