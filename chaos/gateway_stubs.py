"""The acquirers' links to a fleet of gateways: one channel per (acquirer, gateway).

Under mutual TLS a gateway knows an acquirer by its client certificate, and a request's
acquirer_id must be that certificate's: an acquirer-like client therefore keeps a channel
per acquirer it sends for, each presenting that acquirer's certificate
(`chaos.pki.DevPki.acquirer_credentials`). With `credentials=None` every channel is
plaintext (a gateway configured `insecure = true`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc

from authgw.v1 import authorization_pb2_grpc as pb_grpc

__all__ = ["AcquirerStubs", "Credentials", "GatewayStubs"]

Credentials = Callable[[str], grpc.ChannelCredentials]
"""acquirer_id -> the channel credentials that acquirer presents."""

# An acquirer's link comes back within half a second of its gateway: with gRPC's default
# backoff (1 s, x1.6, up to 120 s) a channel to a gateway that was down for a few seconds
# stays in backoff after the gateway is back, and a second gateway's crash then leaves the
# acquirer no link at all (chaos-gateway-crash failed every request for ~3 s that way).
_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


class AcquirerStubs(Protocol):
    """A transport from acquirers to the fleet: stubs with Authorize / Reverse / Advise, and ids."""

    def __len__(self) -> int: ...

    def of(self, acquirer_id: str) -> Sequence[Any]:
        """The stubs `acquirer_id` sends through, one per gateway, in target order."""
        ...

    def new_id(self, acquirer_id: str, proposed: str) -> str:
        """The id a new request (or reversal) of `acquirer_id` goes by on this transport."""
        ...

    async def close(self) -> None: ...


class GatewayStubs:
    """Authorization stubs per acquirer, one per gateway target, made at first use."""

    def __init__(self, targets: Sequence[str], credentials: Credentials | None = None) -> None:
        if not targets:
            raise ValueError("at least one gateway target is needed")
        self._targets = list(targets)
        self._credentials = credentials
        self._channels: dict[str, list[grpc.aio.Channel]] = {}
        self._stubs: dict[str, list[pb_grpc.AuthorizationStub]] = {}

    def __len__(self) -> int:
        return len(self._targets)

    def of(self, acquirer_id: str) -> list[pb_grpc.AuthorizationStub]:
        """The stubs `acquirer_id` sends through, one per gateway, in target order."""
        stubs = self._stubs.get(acquirer_id)
        if stubs is None:
            channels = [self._open(target, acquirer_id) for target in self._targets]
            self._channels[acquirer_id] = channels
            stubs = self._stubs[acquirer_id] = [pb_grpc.AuthorizationStub(c) for c in channels]
        return stubs

    def new_id(self, acquirer_id: str, proposed: str) -> str:
        """gRPC carries the acquirer's own ids unchanged."""
        return proposed

    def _open(self, target: str, acquirer_id: str) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(target, options=_RECONNECT)
        return grpc.aio.secure_channel(target, self._credentials(acquirer_id), options=_RECONNECT)

    async def close(self) -> None:
        """Close every channel; safe twice."""
        channels = [c for group in self._channels.values() for c in group]
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close()
