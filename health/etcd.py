"""A small etcd v3 client over aetcd: several endpoints, a deadline on every call, our own errors.

aetcd talks to one host:port and raises its own (and gRPC's) exceptions.
`EtcdClient` keeps a list of endpoints and one aetcd client at a time; when
an endpoint fails (refused, reset, timed out, no leader) it drops that client
and connects to the next endpoint, so a dead member of a 3-node cluster costs
one failed call. This module is the only place where aetcd and gRPC errors are
seen: they leave it as `health.errors.EtcdError` subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aetcd
import grpc

from authgw.security import (
    CertificateWatcher,
    TlsMaterial,
    TransportSecurity,
    channel_credentials,
    channel_options,
    load_tls_files,
)
from health.endpoints import DEFAULT_ETCD, Endpoint, parse_endpoints
from health.errors import (
    EtcdError,
    EtcdRequestFailed,
    EtcdUnavailable,
    InvalidName,
    LeaseNotFound,
    RevisionCompacted,
)

__all__ = [
    "DEFAULT_ETCD",
    "Endpoint",
    "EtcdClient",
    "EventKind",
    "KeyValue",
    "RangeResult",
    "WatchEvent",
    "parse_endpoints",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

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

_RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)
_FOREIGN_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    aetcd.ClientError,
    grpc.RpcError,
    grpc.aio.UsageError,
)


@dataclass(frozen=True)
class KeyValue:
    """One key as read from etcd."""

    key: str
    value: bytes
    mod_revision: int
    lease: int
    """ID of the lease the key is attached to; 0 for none."""


@dataclass(frozen=True)
class RangeResult:
    """The keys of one range read and the store revision it was served at."""

    kvs: tuple[KeyValue, ...]
    revision: int


class EventKind(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by a watch; `mod_revision` is the revision of the change."""

    kind: EventKind
    key: str
    value: bytes
    mod_revision: int


def _grpc_code(exc: BaseException) -> grpc.StatusCode | None:
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, grpc.aio.AioRpcError):
            code: grpc.StatusCode = candidate.code()
            return code
    return None


def _translate(exc: BaseException, what: str, endpoint: Endpoint) -> EtcdError:
    """Map one aetcd/gRPC/timeout error to our tree (the package's only translation point)."""
    if isinstance(exc, aetcd.RevisionCompactedError):
        return RevisionCompacted(int(exc.compacted_revision))
    if isinstance(exc, TimeoutError | aetcd.ConnectionTimeoutError | aetcd.WatchTimeoutError):
        return EtcdUnavailable(f"{what}: etcd {endpoint} did not answer in time")
    code = _grpc_code(exc)
    detail = str(exc) or type(exc).__name__
    if code is grpc.StatusCode.NOT_FOUND:
        return LeaseNotFound(f"{what}: {detail}")
    if code in _RETRYABLE_CODES or isinstance(exc, aetcd.ConnectionFailedError | grpc.aio.UsageError):
        return EtcdUnavailable(f"{what}: etcd {endpoint} unavailable: {detail}")
    return EtcdRequestFailed(f"{what}: etcd {endpoint} refused: {detail}")


class EtcdClient:
    """An etcd client over several endpoints with fail-over, per-call deadlines and our errors.

    Args:
        endpoints: the cluster's client URLs, tried in order, wrapping around.
        request_timeout_s: deadline of each request on one endpoint (watch creation included).
        security: mutual TLS (our client certificate, whose CN etcd's `--client-cert-auth`
            takes as the user; the CA of etcd's server certificate), or plaintext by choice.
            The certificate files are read here (CertificateError naming a bad one); call
            `follow_certificates()` to pick up rotated files without a restart.
        server_name: the name etcd's certificate must carry, when not the endpoint's host.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        request_timeout_s: float = 1.0,
        security: TransportSecurity | None = None,
        server_name: str | None = None,
    ) -> None:
        if not endpoints:
            raise InvalidName("at least one etcd endpoint is needed")
        self._endpoints = tuple(endpoints)
        self._timeout_s = request_timeout_s
        self.security = security or TransportSecurity.plaintext()
        self._material = None if self.security.tls is None else load_tls_files(self.security.tls)
        self._channel = _ChannelFactory(self._material, server_name)
        self._certificates: CertificateWatcher | None = None
        self._index = 0
        self._connection: _Connection | None = None
        self._retired: set[_Connection] = set()  # failed over from, closed by their last user
        self._failing: set[Endpoint] = set()
        self._closed = False
        # With one endpoint the users of this client log the outage themselves, once.
        self._failover_log_level = logging.WARNING if len(self._endpoints) > 1 else logging.DEBUG

    @classmethod
    def from_urls(cls, spec: str, *, request_timeout_s: float = 1.0) -> EtcdClient:
        """Build a client from a comma-separated list of URLs (the --etcd flag)."""
        return cls(parse_endpoints(spec), request_timeout_s=request_timeout_s)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint the next request goes to."""
        return self._endpoints[self._index]

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def follow_certificates(self) -> None:
        """Rebuild the connection when our certificate files change (no-op in plaintext).

        Requests and watches in flight finish on the old channel; the next request opens a
        new one with the new certificate.
        """
        if self._material is None or self._certificates is not None:
            return

        async def changed(material: TlsMaterial) -> None:
            self._channel = _ChannelFactory(material, self._channel.server_name)
            connection, self._connection = self._connection, None
            if connection is not None:
                if connection.users:
                    self._retired.add(connection)  # closed by its last user
                else:
                    await connection.close()

        self._certificates = CertificateWatcher(self._material, changed)
        await self._certificates.start()

    async def close(self) -> None:
        """Close the connection; safe to call twice. The client cannot be used afterwards."""
        self._closed = True
        if self._certificates is not None:
            await self._certificates.close()
        connections = [self._connection, *self._retired]
        self._connection = None
        self._retired.clear()
        for connection in connections:
            if connection is not None:
                await connection.close()

    # -- key-value ---------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        """Read one key (linearizable)."""
        got = await self._call(f"get {key}", lambda c: c.get(key.encode()))
        return None if got is None else _key_value(got)

    async def get_prefix(self, prefix: str) -> RangeResult:
        """Read every key under `prefix` in one range request, with the revision it reflects."""
        got = await self._call(f"range {prefix}", lambda c: c.get_prefix(prefix.encode()))
        return RangeResult(tuple(_key_value(kv) for kv in got), int(got.header.revision))

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write one key, attached to `lease` when non-zero; return the new revision."""
        put = await self._call(f"put {key}", lambda c: c.put(key.encode(), value, lease=lease))
        return int(put.header.revision)

    async def delete(self, key: str) -> bool:
        """Delete one key; return whether it existed."""
        deleted = await self._call(f"delete {key}", lambda c: c.delete(key.encode()))
        return deleted is not None

    async def revision(self) -> int:
        """Return the store's current revision (a range read of one key that cannot exist)."""
        got = await self._call("read revision", lambda c: c.get_range(b"\0", b"\0\0"))
        return int(got.header.revision)

    async def compact(self, revision: int) -> None:
        """Drop history older than `revision` (operators and tests; etcd auto-compacts too)."""
        await self._call(f"compact {revision}", lambda c: c.compact(revision, physical=True))

    # -- leases ------------------------------------------------------------

    async def grant_lease(self, ttl_s: int) -> int:
        """Create a lease of `ttl_s` seconds and return its ID."""
        lease = await self._call(f"grant lease ttl={ttl_s}s", lambda c: c.lease(ttl_s))
        return int(lease.id)

    async def refresh_lease(self, lease_id: int) -> int:
        """Send one keep-alive; return the renewed TTL, raise LeaseNotFound if it is gone."""
        reply = await self._call(f"keep lease {lease_id:x} alive", lambda c: c.refresh_lease(lease_id))
        ttl = 0 if reply is None else int(reply.TTL)
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} expired or was revoked")
        return ttl

    async def revoke_lease(self, lease_id: int) -> bool:
        """Revoke a lease (its keys are deleted at once); False if it was already gone."""
        try:
            await self._call(f"revoke lease {lease_id:x}", lambda c: c.revoke_lease(lease_id))
        except LeaseNotFound:
            return False
        return True

    async def lease_ttl(self, lease_id: int) -> int | None:
        """Return the seconds the lease has left, or None if it no longer exists."""
        info = await self._call(
            f"lease {lease_id:x} time-to-live", lambda c: c.get_lease_info(lease_id, keys=False)
        )
        ttl = int(info.TTL)
        return None if ttl < 0 else ttl

    # -- watch -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """Create a watch of every change under `prefix` from `start_revision` on.

        Entering raises EtcdError if the watch cannot be created; inside, the
        yielded iterator gives the events and always ends with an EtcdError
        (EtcdUnavailable when the stream broke, RevisionCompacted when
        `start_revision` is older than etcd's history): the caller re-watches.
        Leaving cancels the watch on the server.
        """
        what = f"watch {prefix} from revision {start_revision}"
        async with self._using() as connection:
            endpoint = connection.endpoint
            try:
                async with asyncio.timeout(self._timeout_s):
                    watch = await connection.client.watch_prefix(
                        prefix.encode(), start_revision=start_revision
                    )
            except _FOREIGN_ERRORS as exc:
                raise self._failed(exc, what, connection) from exc
            self._succeeded(endpoint)

            async def events() -> AsyncGenerator[WatchEvent, None]:
                try:
                    async for event in watch:
                        kv = event.kv
                        yield WatchEvent(
                            EventKind(event.kind), kv.key.decode(), bytes(kv.value), int(kv.mod_revision)
                        )
                except _FOREIGN_ERRORS as exc:
                    raise self._failed(exc, what, connection) from exc
                # aetcd ends the iteration quietly when its channel is closed under it (close()):
                # for our caller it is a broken stream like any other.
                raise EtcdUnavailable(f"{what}: stream to etcd {endpoint} closed")

            stream = events()
            try:
                yield stream
            finally:
                await stream.aclose()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._timeout_s):
                        await watch.cancel()

    # -- plumbing ----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _using(self) -> AsyncIterator[_Connection]:
        """Lend the current connection for one request or watch.

        A connection is closed only once nobody uses it: closing a gRPC channel
        cancels its calls with a bare CancelledError, which a concurrent caller
        would take for the cancellation of its own task.
        """
        if self._closed:
            raise RuntimeError("EtcdClient used after close()")
        if self._connection is None:
            self._connection = _Connection(self._endpoints[self._index], self._timeout_s, self._channel)
        connection = self._connection
        connection.users += 1
        try:
            yield connection
        finally:
            connection.users -= 1
            if connection in self._retired and connection.users == 0:
                self._retired.discard(connection)
                await connection.close()

    async def _call(self, what: str, op: Callable[[Any], Awaitable[T]]) -> T:
        """Run `op` on the current endpoint; on a refused connection try the next ones once each."""
        failure: tuple[EtcdError, BaseException] | None = None
        for _ in self._endpoints:
            async with self._using() as connection:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        result = await op(connection.client)
                except _FOREIGN_ERRORS as exc:
                    failure = (self._failed(exc, what, connection), exc)
                    if not isinstance(failure[0], EtcdUnavailable) or isinstance(
                        exc, TimeoutError | aetcd.ConnectionTimeoutError
                    ):
                        break  # a slow endpoint already used this call's whole deadline
                    continue
            self._succeeded(connection.endpoint)
            return result
        assert failure is not None  # the loop ran at least once: there is at least one endpoint
        raise failure[0] from failure[1]

    def _failed(self, exc: BaseException, what: str, connection: _Connection) -> EtcdError:
        error = _translate(exc, what, connection.endpoint)
        if isinstance(error, EtcdUnavailable):
            self._fail_over(connection, error)
        return error

    def _succeeded(self, endpoint: Endpoint) -> None:
        if endpoint in self._failing:
            self._failing.discard(endpoint)
            log.info("etcd endpoint %s answers again", endpoint)

    def _fail_over(self, connection: _Connection, error: EtcdError) -> None:
        if connection.endpoint not in self._failing:
            self._failing.add(connection.endpoint)  # log once per outage of an endpoint, not per retry
            log.log(self._failover_log_level, "etcd endpoint %s failed: %s", connection.endpoint, error)
        if connection is not self._connection or self._closed:
            return  # a concurrent caller already moved on from this connection
        # A fresh channel even with a single endpoint: it skips gRPC's reconnect backoff.
        self._connection = None
        self._index = (self._index + 1) % len(self._endpoints)
        self._retired.add(connection)


class _ChannelFactory:
    """How a connection opens its gRPC channel: plaintext, or TLS with our current certificate."""

    def __init__(self, material: TlsMaterial | None, server_name: str | None) -> None:
        self.server_name = server_name
        self.credentials = None if material is None else channel_credentials(material)
        self.options = channel_options(server_name, tuple(_CHANNEL_OPTIONS.items()))

    def open(self, target: str) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(target, options=self.options)
        return grpc.aio.secure_channel(target, self.credentials, options=self.options)


_aetcd_errors: Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]] = (
    aetcd.client._handle_errors  # aetcd's own error translation, as on its connect()
)


class _Client(aetcd.Client):  # type: ignore[misc]  # aetcd has no type information
    """aetcd's client with our channel: aetcd 1.0.0 always opens an insecure one.

    `connect()` is aetcd's own (1.0.0, client.py) with the channel creation replaced and
    the password authentication dropped: etcd authenticates us by our client certificate
    (`--client-cert-auth`: its CN is the user), so there is no token to expire, which aetcd
    would never renew.
    """

    def __init__(self, factory: _ChannelFactory, **kwargs: Any) -> None:
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
            self._watcher = aetcd.watcher.Watcher(
                aetcd.rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


class _Connection:
    """One aetcd client (one gRPC channel) to one endpoint, and how many requests are using it."""

    def __init__(self, endpoint: Endpoint, timeout_s: float, factory: _ChannelFactory) -> None:
        self.endpoint = endpoint
        self.users = 0
        self._timeout_s = timeout_s
        self.client: Any = _Client(factory, host=endpoint.host, port=endpoint.port, timeout=timeout_s)
        self.client.metadata = _REQUIRE_LEADER  # aetcd sends client.metadata with every call

    async def close(self) -> None:
        # Closing a channel to a dead peer must neither hang nor fail the caller's own error path.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout_s):
                await self.client.close()


def _key_value(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key.decode(),
        value=bytes(kv.value),
        mod_revision=int(kv.mod_revision),
        lease=int(kv.lease),
    )
