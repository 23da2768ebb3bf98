"""The acquirers' links to a fleet of gateways: one channel per (acquirer, gateway).

Under mutual TLS a gateway knows an acquirer by its client certificate, and a request's
acquirer_id must be that certificate's: an acquirer-like client therefore keeps a channel
per acquirer it sends for, each presenting that acquirer's certificate
(`chaos.pki.DevPki.acquirer_credentials`). With `credentials=None` every channel is
plaintext (a gateway configured `insecure = true`).

`balanced=True`: one channel per acquirer over every gateway with gRPC's client-side
`round_robin` (`gateway.fleet_client`), as a production acquirer would; `of()` then gives that
one stub once per gateway, so a caller moving on to "the next gateway" after a refusal sends
the same request again through the rotation, and the index it records is the attempt's, not
a gateway's. Under TLS the channel checks every gateway's certificate against one name,
`server_name` (the dev PKI's gateways carry `chaos.pki.GATEWAY_SERVER_NAME`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc

from authgw.security import channel_options
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.fleet_client import ROUND_ROBIN_OPTIONS, fleet_target

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

    def __init__(
        self,
        targets: Sequence[str],
        credentials: Credentials | None = None,
        *,
        balanced: bool = False,
        server_name: str | None = None,
    ) -> None:
        if not targets:
            raise ValueError("at least one gateway target is needed")
        self._targets = list(targets)
        self._balanced = fleet_target(targets, "targets") if balanced else None
        self._balanced_options = channel_options(server_name, ROUND_ROBIN_OPTIONS)
        self._credentials = credentials
        self._channels: dict[str, list[grpc.aio.Channel]] = {}
        self._stubs: dict[str, list[pb_grpc.AuthorizationStub]] = {}

    def __len__(self) -> int:
        return len(self._targets)

    def of(self, acquirer_id: str) -> list[pb_grpc.AuthorizationStub]:
        """The stubs `acquirer_id` sends through, one per gateway, in target order."""
        stubs = self._stubs.get(acquirer_id)
        if stubs is None and self._balanced is not None:
            channel = self._open(self._balanced, acquirer_id, self._balanced_options)
            self._channels[acquirer_id] = [channel]
            stubs = self._stubs[acquirer_id] = [pb_grpc.AuthorizationStub(channel)] * len(self._targets)
        elif stubs is None:
            channels = [self._open(target, acquirer_id) for target in self._targets]
            self._channels[acquirer_id] = channels
            stubs = self._stubs[acquirer_id] = [pb_grpc.AuthorizationStub(c) for c in channels]
        return stubs

    def new_id(self, acquirer_id: str, proposed: str) -> str:
        """gRPC carries the acquirer's own ids unchanged."""
        return proposed

    def _open(
        self, target: str, acquirer_id: str, options: Sequence[tuple[str, Any]] = ()
    ) -> grpc.aio.Channel:
        options = (*_RECONNECT, *options)
        if self._credentials is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self._credentials(acquirer_id), options=options)

    async def close(self) -> None:
        """Close every channel; safe twice."""
        channels = [c for group in self._channels.values() for c in group]
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close()
