"""The one boundary between stand-in and redis-py: client set-up, deadlines, error translation.

redis-py's defaults (5 s socket timeouts, 10 retries with up to 1 s backoff) would
let a dead Redis eat the whole authorization deadline. Stand-in has a reserve of
about 150 ms, so here a dead Redis must be detected in ~100 ms: short connect and
read timeouts, one quick retry on a connection error only (a pooled socket left
stale by a Redis restart fails instantly; a retry on a fresh one is cheap), no
retry on a timeout (the time is already spent), and an overall asyncio deadline
around every call. Retrying is safe because every script is idempotent (decision
by request id, append by decision id).

Over TLS the connections use our own context and log in as the login's ACL user
(redis_secure.py); redis_link.py keeps a long-lived client current when its
certificate rotates.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from redis.asyncio import Connection, ConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import HiredisRespSerializer
from redis.credentials import CredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.utils import HIREDIS_AVAILABLE

from authgw.config import ConfigError
from authgw.security import CertificateError, TlsMaterial, load_tls_files
from standin.errors import StoreUnavailableError
from standin.redis_config import RedisRole, RedisSettings
from standin.redis_durable import Durability, DurableScript, RedisClient, ScriptRunner
from standin.redis_secure import CancelSafeConnect, PasswordFile, TlsConnection, tls_context

__all__ = [
    "RedisGate", "cluster_client", "load_login_material", "make_redis_client", "password_file",
    "redis_pool", "set_cluster_tls",
]  # fmt: skip

T = TypeVar("T")
log = logging.getLogger(__name__)


class _HiredisPacking:
    """Packs commands in C with hiredis.

    redis-py's sync client packs with hiredis when it is installed; its asyncio client always
    packs in Python, which was the largest own-time entry of a stand-in decision's profile.
    Same wire format (redis-py's own HiredisRespSerializer), same UTF-8 strict encoding.
    """

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._packer.pack(*args)
        return packed


class _TcpConnection(CancelSafeConnect, Connection):
    """redis.asyncio's TCP connection, closed if its log-in does not finish."""


class _HiredisPackingConnection(_HiredisPacking, _TcpConnection):
    """Our TCP connection, packing with hiredis."""


class _HiredisTlsConnection(_HiredisPacking, TlsConnection):
    """Our TLS connection, packing with hiredis."""


def make_redis_client(
    settings: RedisSettings,
    *,
    tls: ssl.SSLContext | None = None,
    credentials: CredentialProvider | None = None,
) -> RedisClient:
    """A redis.asyncio client (RedisCluster with `settings.cluster`) tuned to fail fast (module docstring).

    The pool itself is not capped: a capped redis-py pool raises at once when every connection is
    busy, which a burst would mistake for an outage. Each RedisGate bounds its own concurrency
    instead (callers beyond it wait for a slot within their deadline).

    Args:
        tls: the client context of a TLS login (redis_link.py rebuilds it on rotation); by default
            built from the login's files now (blocking reads).
        credentials: the login's user and password; by default its password file, read now.

    Raises ConfigError naming the key when the login's certificate or password file is unusable.
    """
    if settings.cluster:
        return cluster_client(settings, tls=tls, credentials=credentials)
    return Redis.from_pool(redis_pool(settings, tls=tls, credentials=credentials))


def cluster_client(
    settings: RedisSettings,
    *,
    tls: ssl.SSLContext | None = None,
    credentials: CredentialProvider | None = None,
) -> RedisCluster:
    """redis-py's RedisCluster with the same deadlines, TLS context and login as one Redis.

    RedisCluster picks its own connection class (redis-py's SSLConnection, system CAs
    included); ours (our CA only, cancel-safe log-in, hiredis packing) is put into the
    keyword arguments its nodes are built from, before any node connects.
    """
    tls, credentials = _login_defaults(settings, tls, credentials)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in settings.seed_nodes()],
        socket_connect_timeout=settings.connect_timeout.total_seconds(),
        socket_timeout=settings.socket_timeout.total_seconds(),
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.005, cap=settings.retry_backoff_cap.total_seconds()),
            retries=settings.retries,
        ),
        max_connections=settings.max_connections,
        health_check_interval=0,
        decode_responses=False,
        credential_provider=credentials,
        driver_info=None,
    )
    set_cluster_tls(client, tls)
    return client


def set_cluster_tls(client: RedisCluster, tls: ssl.SSLContext | None) -> None:
    """Our connection class (and TLS context) for every node, now and found later.

    A node keeps its connection objects for ever and each reconnects with the context it was
    built with (redis_secure.py), so every existing TlsConnection is given the new context too,
    and each is marked to reconnect (an idle one on its next use, a busy one once released).
    """
    extra: dict[str, Any] = {"connection_class": _connection_class(tls)}
    if tls is not None:
        extra["tls_context"] = tls
    client.connection_kwargs.update(extra)  # the dict NodesManager builds new nodes from
    nodes = {**client.nodes_manager.startup_nodes, **client.nodes_manager.nodes_cache}
    for node in nodes.values():
        node.connection_class = extra["connection_class"]
        if tls is not None:
            node.connection_kwargs["tls_context"] = tls
        for conn in node._connections:
            if tls is not None and isinstance(conn, TlsConnection):
                conn.use_context(tls)
            conn.mark_for_reconnect()  # type: ignore[no-untyped-call]


def _connection_class(tls: ssl.SSLContext | None) -> type[Connection]:
    if tls is not None:
        return _HiredisTlsConnection if HIREDIS_AVAILABLE else TlsConnection
    return _HiredisPackingConnection if HIREDIS_AVAILABLE else _TcpConnection


def redis_pool(
    settings: RedisSettings,
    *,
    tls: ssl.SSLContext | None = None,
    credentials: CredentialProvider | None = None,
) -> ConnectionPool:
    """The connection pool of `make_redis_client` (a fresh one is swapped in when certificates rotate)."""
    tls, credentials = _login_defaults(settings, tls, credentials)
    options = parse_url(settings.url)  # host, port, db (or path); the class is chosen below
    default_class = options.pop("connection_class", Connection)
    if tls is not None:
        connection: dict[str, Any] = {"connection_class": _connection_class(tls), "tls_context": tls}
    elif default_class is Connection:
        connection = {"connection_class": _connection_class(None)}
    else:
        connection = {"connection_class": default_class}
    return ConnectionPool(
        **options,
        **connection,
        socket_connect_timeout=settings.connect_timeout.total_seconds(),
        socket_timeout=settings.socket_timeout.total_seconds(),
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.005, cap=settings.retry_backoff_cap.total_seconds()),
            retries=settings.retries,
            supported_errors=(RedisConnectionError,),
        ),
        health_check_interval=0,
        decode_responses=False,
        credential_provider=credentials,
        # No CLIENT SETINFO on connect: two round trips for a label, and a command our ACL users
        # are not granted (Redis 7.0 does not know it; 7.2+ would log every connect as denied).
        driver_info=None,
    )


def _login_defaults(
    settings: RedisSettings, tls: ssl.SSLContext | None, credentials: CredentialProvider | None
) -> tuple[ssl.SSLContext | None, CredentialProvider | None]:
    """The TLS context and credentials given, else the login's own, read now (blocking)."""
    login = settings.login
    if login.security.tls is not None and tls is None:
        tls = tls_context(load_login_material(settings))
    if login.username and credentials is None:
        credentials = password_file(settings)
    return tls, credentials


def load_login_material(settings: RedisSettings) -> TlsMaterial:
    """The login's checked certificate, key and CA (blocking); ConfigError names the key."""
    files = settings.login.security.tls
    assert files is not None
    try:
        return load_tls_files(files)
    except CertificateError as exc:
        names = {str(files.cert): "cert", str(files.key): "key", str(files.ca): "ca"}
        raise ConfigError(
            settings.file or "<redis settings>",
            _login_key(settings, names.get(exc.path, "cert")),
            f"{exc.path}: {exc.problem}",
            "replace the file, or name a usable one",
        ) from exc


def password_file(settings: RedisSettings) -> PasswordFile:
    """The login's user and password file, read once now (blocking); ConfigError names the key."""
    login = settings.login
    assert login.password_file is not None
    try:
        return PasswordFile(login.username, login.password_file)
    except (OSError, ValueError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            settings.file or "<redis settings>",
            _login_key(settings, "password_file"),
            f"{login.password_file}: cannot read the password ({problem})",
            "write the user's password in it (mode 0600)",
        ) from exc


def _login_key(settings: RedisSettings, name: str) -> str:
    """The dotted key of `name` in the section the current login came from."""
    for role, login in ((RedisRole.OPERATOR, settings.operator), (RedisRole.SETTLE, settings.settle)):
        if login is settings.login:
            return f"redis.{role.value}.{name}"
    return f"redis.{name}"


def _never_sent(exc: BaseException) -> bool:
    """The command cannot have reached Redis: the connection itself could not be made.

    redis-py words a failed connect "Error <errno> connecting to <host>:<port>" or "Timeout
    connecting to server"; anything else (a reset, a closed connection, a read timeout) may come
    after Redis ran the command. A retried call reports its last error only: an earlier try may
    have run. Migration copes with that rare case (migrate.py: the record's own decision is
    journaled from the local one's content).
    """
    return isinstance(exc, RedisError) and "connecting to" in str(exc)


class RedisGate:
    """Runs Redis calls under a deadline and turns every failure into StoreUnavailableError.

    `redis` is one Redis or a Redis Cluster (redis_durable.RedisClient); `script()` gives the
    scripts an answer depends on, run on their key's node and followed by WAIT when
    `durability` asks for replicas (redis_durable.py).

    At most `max_concurrency` calls run at once (RedisSettings.max_connections): the others
    wait for a slot within their deadline. An asyncio.Semaphore does this for a fraction of the
    CPU of redis-py's BlockingConnectionPool, which matters at a thousand decisions a second.
    """

    def __init__(
        self,
        redis: RedisClient,
        deadline: timedelta,
        max_concurrency: int = 64,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        self._scripts = ScriptRunner(redis, durability or Durability())
        self._deadline_s = deadline.total_seconds()
        self._slots = asyncio.Semaphore(max_concurrency)

    def script(self, source: str) -> DurableScript:
        """A Lua script of `source`, run on its first key's node (with WAIT when configured)."""
        return self._scripts.script(source)

    async def call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Await `op()` within the deadline; `what` names the operation in errors."""
        try:
            async with asyncio.timeout(self._deadline_s), self._slots:
                return await op()
        except TimeoutError as exc:  # asyncio's overall deadline (redis-py's own is a RedisError)
            raise StoreUnavailableError(
                f"redis {what}: no answer within {self._deadline_s * 1000:.0f} ms"
            ) from exc
        except ResponseError as exc:
            # Redis answered but refused (OOM, READONLY replica, LOADING, script error): we cannot
            # record there now. Logged: a script error here is a bug, not an outage.
            log.warning("redis %s refused: %s", what, exc)
            raise StoreUnavailableError(f"redis {what}: {exc}", maybe_applied=False) from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(
                f"redis {what}: {type(exc).__name__}: {exc}", maybe_applied=not _never_sent(exc)
            ) from exc

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless Redis answers a PING within the deadline."""

        async def op() -> object:
            return await self.redis.ping()

        await self.call("ping", op)
