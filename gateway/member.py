"""A pool member: one issuer host, its reused gRPC channel, its load and ejection state."""

from __future__ import annotations

import grpc

from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.config import OutlierConfig
from gateway.outlier import Ejection

__all__ = ["CHANNEL_OPTIONS", "Member"]

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


class Member:
    """An issuer host inside a pool."""

    __slots__ = ("address", "channel", "ejection", "in_flight", "name", "pool", "stub", "weight")

    def __init__(self, pool: str, name: str, address: str, weight: int, outlier: OutlierConfig) -> None:
        self.pool = pool
        self.name = name
        self.address = address
        self.weight = max(1, weight)
        self.in_flight = 0
        self.ejection = Ejection(outlier)
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.IssuerHostStub(self.channel)
        self.channel.get_state(try_to_connect=True)  # connect now, not on the first customer request

    def load(self) -> float:
        """In-flight requests per unit of weight (power-of-two-choices compares this)."""
        return self.in_flight / self.weight

    async def close(self) -> None:
        await self.channel.close(grace=1.0)

    def __repr__(self) -> str:
        return f"Member({self.pool}/{self.name} {self.address})"
