"""A small etcd v3 client over aetcd: several endpoints, a deadline on every call, our own errors.

aetcd talks to one host:port and raises its own (and gRPC's) exceptions.
`EtcdClient` keeps a list of endpoints and one aetcd client at a time; when
an endpoint fails (refused, reset, timed out, no leader) it drops that client
and connects to the next endpoint, so a dead member of a 3-node cluster costs
one failed call. aetcd and gRPC errors are caught here and nowhere else, and leave
as `health.errors.EtcdError` subclasses (the mapping: `health.etcd_errors`).

Under etcd authentication (`--client-cert-auth`, `auth enable`) the etcd user is
the CN of our client certificate (`EtcdClient.user`); a request outside that
user's roles fails with `EtcdPermissionDenied` naming the request, its key and
the user. Leases need nothing more than the keys they carry: granting and
keeping alive are open to any authenticated user in etcd 3.4, revoking needs
write permission on every key attached. A watch needs read permission on its
range (`health.etcd_channel` makes etcd's refusal an error instead of a silent,
empty watch). `transaction` writes several keys at once: an operator's change
and its audit record (`health.admin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aetcd

from authgw.security import CertificateWatcher, TlsMaterial, TransportSecurity, load_tls_files
from authgw.security.pemfile import subject_names
from health.endpoints import DEFAULT_ETCD, Endpoint, check_schemes, parse_endpoints
from health.errors import (
    EtcdError,
    EtcdUnavailable,
    InvalidName,
    LeaseNotFound,
)
from health.etcd_channel import ChannelFactory, Connection
from health.etcd_errors import FOREIGN_ERRORS, translate
from health.etcd_records import (
    EventKind,
    KeyValue,
    RangeResult,
    TxnDelete,
    TxnOp,
    TxnPut,
    TxnResult,
    WatchEvent,
)

__all__ = [
    "DEFAULT_ETCD",
    "Endpoint",
    "EtcdClient",
    "EventKind",
    "KeyValue",
    "RangeResult",
    "TxnDelete",
    "TxnOp",
    "TxnPut",
    "TxnResult",
    "WatchEvent",
    "parse_endpoints",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        self.user = None if self._material is None else subject_names(self._material.leaf).common_name
        """The etcd user our certificate names (its CN), None in plaintext."""
        check_schemes(self._endpoints, tls=self._material is not None)
        self._channel = ChannelFactory(self._material, server_name)
        self._certificates: CertificateWatcher | None = None
        self._index = 0
        self._connection: Connection | None = None
        self._retired: set[Connection] = set()  # failed over from, closed by their last user
        self._failing: set[Endpoint] = set()
        self._closed = False
        # With one endpoint the users of this client log the outage themselves, once.
        self._failover_log_level = logging.WARNING if len(self._endpoints) > 1 else logging.DEBUG

    @classmethod
    def from_urls(
        cls, spec: str, *, request_timeout_s: float = 1.0, security: TransportSecurity | None = None
    ) -> EtcdClient:
        """Build a client from a comma-separated list of URLs (the --etcd flag)."""
        return cls(parse_endpoints(spec), request_timeout_s=request_timeout_s, security=security)

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
            self._channel = ChannelFactory(material, self._channel.server_name)
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

    async def revision(self, key: str = "\0") -> int:
        """Return the store's current revision: the header of a read of `key` alone.

        Under etcd auth give a key the user may read (any key of its prefix will do;
        the default, a key nobody writes, is outside every role).
        """
        end = f"{key}\0".encode()
        got = await self._call(f"read revision at {key!r}", lambda c: c.get_range(key.encode(), end))
        return int(got.header.revision)

    async def transaction(
        self, ops: Sequence[TxnOp], *, absent: Sequence[str] = (), unchanged: Mapping[str, int] | None = None
    ) -> TxnResult:
        """Apply `ops` at one revision, all or nothing, if none of the `absent` keys exists.

        `unchanged` maps keys to the mod_revision they were read at (0: absent then): the
        transaction applies only if none of them changed since (optimistic concurrency).

        etcd checks every key of the transaction against our roles (`absent` keys need
        read permission) and refuses all of it if one is outside them.
        """
        named = ", ".join(f"{'put' if isinstance(op, TxnPut) else 'delete'} {op.key}" for op in ops)
        what = f"transaction [{named}]" + (f" if absent {', '.join(absent)}" if absent else "")
        unchanged = dict(unchanged or {})

        def run(c: Any) -> Awaitable[tuple[bool, list[Any]]]:
            t = c.transactions
            return c.transaction(  # type: ignore[no-any-return]
                compare=[t.create(key.encode()) == 0 for key in absent]
                + [t.mod(key.encode()) == revision for key, revision in unchanged.items()],
                success=[
                    t.put(op.key.encode(), op.value, lease=op.lease or None)
                    if isinstance(op, TxnPut)
                    else t.delete(op.key.encode())
                    for op in ops
                ],
                failure=[],
            )

        applied, responses = await self._call(what, run)
        deleted = tuple(
            int(r.response_delete_range.deleted) for r in responses if r.HasField("response_delete_range")
        )
        revision = max((int(_response_header(r).revision) for r in responses), default=0)
        return TxnResult(applied=applied, revision=revision, deleted=deleted if applied else ())

    async def auth_request(self, method: str, request: Any, *, what: str) -> Any:
        """One call of etcd's Auth service (users, roles, `auth enable`) with our deadline and errors.

        `method` names the RPC (`UserAdd`, `RoleGrantPermission`, ...), `request` is its
        etcd message; `what` says what it does, for the error message.
        """

        async def run(c: Any) -> Any:
            await c.connect()
            return await getattr(c.auth_stub, method)(request, timeout=self._timeout_s, metadata=c.metadata)

        return await self._call(what, run)

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
            except FOREIGN_ERRORS as exc:
                raise self._failed(exc, what, connection) from exc
            self._succeeded(endpoint)

            async def events() -> AsyncGenerator[WatchEvent, None]:
                try:
                    async for event in watch:
                        kv = event.kv
                        yield WatchEvent(
                            EventKind(event.kind), kv.key.decode(), bytes(kv.value), int(kv.mod_revision)
                        )
                except FOREIGN_ERRORS as exc:
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
    async def _using(self) -> AsyncIterator[Connection]:
        """Lend the current connection for one request or watch.

        A connection is closed only once nobody uses it: closing a gRPC channel
        cancels its calls with a bare CancelledError, which a concurrent caller
        would take for the cancellation of its own task.
        """
        if self._closed:
            raise RuntimeError("EtcdClient used after close()")
        if self._connection is None:
            self._connection = Connection(self._endpoints[self._index], self._timeout_s, self._channel)
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
                except FOREIGN_ERRORS as exc:
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

    def _failed(self, exc: BaseException, what: str, connection: Connection) -> EtcdError:
        error = translate(exc, what, connection.endpoint, self.user)
        if isinstance(error, EtcdUnavailable):
            self._fail_over(connection, error)
        return error

    def _succeeded(self, endpoint: Endpoint) -> None:
        if endpoint in self._failing:
            self._failing.discard(endpoint)
            log.info("etcd endpoint %s answers again", endpoint)

    def _fail_over(self, connection: Connection, error: EtcdError) -> None:
        if connection.endpoint not in self._failing:
            self._failing.add(connection.endpoint)  # log once per outage of an endpoint, not per retry
            log.log(self._failover_log_level, "etcd endpoint %s failed: %s", connection.endpoint, error)
        if connection is not self._connection or self._closed:
            return  # a concurrent caller already moved on from this connection
        # A fresh channel even with a single endpoint: it skips gRPC's reconnect backoff.
        self._connection = None
        self._index = (self._index + 1) % len(self._endpoints)
        self._retired.add(connection)


def _response_header(response: Any) -> Any:
    kind = response.WhichOneof("response")
    return getattr(response, kind).header


def _key_value(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key.decode(),
        value=bytes(kv.value),
        mod_revision=int(kv.mod_revision),
        lease=int(kv.lease),
    )
