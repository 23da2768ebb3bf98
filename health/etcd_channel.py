"""aetcd with our own gRPC channel (plaintext or mutual TLS), one connection per endpoint.

aetcd 1.0.0 always opens an insecure channel and authenticates by password, with a
token it never renews. `AetcdClient` opens the channel `ChannelFactory` builds instead:
etcd then authenticates us by our client certificate (`--client-cert-auth`: its CN is
the etcd user). `RefusalAwareWatcher` fixes one more thing aetcd gets wrong under
authentication: etcd refuses a watch by answering "created" and "canceled" at once,
which aetcd takes for a live watch that then never sees an event.

Nothing here catches errors: `health.etcd` translates them, the package's one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aetcd
import grpc

from authgw.security import TlsMaterial, channel_credentials, channel_options
from health.endpoints import Endpoint

__all__ = ["AetcdClient", "ChannelFactory", "Connection", "RefusalAwareWatcher"]

# Reconnect quickly once an endpoint is back (gRPC's default backoff grows to 120 s), and
# notice a silent peer within seconds (etcd refuses pings more often than every 5 s).
_CHANNEL_OPTIONS: dict[str, int] = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 3_000,
}
# Ask etcd to fail requests and watches on a member that has lost its leader,
# instead of hanging on it (what etcd's own clientv3 does with WithRequireLeader).
_REQUIRE_LEADER = (("hasleader", "true"),)


class ChannelFactory:
    """How a connection opens its gRPC channel: plaintext, or TLS with our current certificate."""

    def __init__(self, material: TlsMaterial | None, server_name: str | None) -> None:
        self.server_name = server_name
        self.credentials = None if material is None else channel_credentials(material)
        self.options = channel_options(server_name, tuple(_CHANNEL_OPTIONS.items()))

    def open(self, target: str) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(target, options=self.options)
        return grpc.aio.secure_channel(target, self.credentials, options=self.options)


class RefusalAwareWatcher(aetcd.watcher.Watcher):  # type: ignore[misc]  # aetcd has no type information
    """aetcd's watcher, failing the watch creation etcd refused (permission denied) instead of hanging.

    etcd 3.4 answers a watch on keys the user may not read with one response that is
    both `created` and `canceled` (the reason in `cancel_reason`); aetcd registers it as
    a live watch. Here the creation fails with that reason, as any refused request does.
    """

    async def _handle_response(self, response: Any) -> None:
        if response.created and response.canceled and response.compact_revision == 0:
            async with self._lock:
                if self._new_callback is not None:
                    reason = response.cancel_reason or "watch canceled by etcd at creation"
                    self._new_callback.error = aetcd.ClientError(reason)
                    self._new_callback_ready.notify_all()
            return
        await super()._handle_response(response)


_aetcd_errors: Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]] = (
    aetcd.client._handle_errors  # aetcd's own error translation, as on its connect()
)


class AetcdClient(aetcd.Client):  # type: ignore[misc]  # aetcd has no type information
    """aetcd's client with our channel: aetcd 1.0.0 always opens an insecure one.

    `connect()` is aetcd's own (1.0.0, client.py) with the channel creation replaced and
    the password authentication dropped: etcd authenticates us by our client certificate
    (`--client-cert-auth`: its CN is the user), so there is no token to expire, which aetcd
    would never renew.
    """

    def __init__(self, factory: ChannelFactory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._factory = factory

    @_aetcd_errors
    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:  # type: ignore[has-type]  # another task is connecting: wait for it
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            self.channel = self._factory.open(f"{self._host}:{self._port}")
            self.kvstub = aetcd.rpc.KVStub(self.channel)
            self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
            self.leasestub = aetcd.rpc.LeaseStub(self.channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
            self.auth_stub = aetcd.rpc.AuthStub(self.channel)
            self._watcher = RefusalAwareWatcher(
                aetcd.rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


class Connection:
    """One aetcd client (one gRPC channel) to one endpoint, and how many requests are using it."""

    def __init__(self, endpoint: Endpoint, timeout_s: float, factory: ChannelFactory) -> None:
        self.endpoint = endpoint
        self.users = 0
        self._timeout_s = timeout_s
        self.client: Any = AetcdClient(factory, host=endpoint.host, port=endpoint.port, timeout=timeout_s)
        self.client.metadata = _REQUIRE_LEADER  # aetcd sends client.metadata with every call

    async def close(self) -> None:
        # Closing a channel to a dead peer must neither hang nor fail the caller's own error path.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout_s):
                await self.client.close()
