"""A long-lived Redis client that stays secure: certificates rotate without a restart, plaintext is loud.

    link = RedisLink(config.redis, RedisRole.GATEWAY)   # reads our certificate: a bad file stops here
    await link.start()                                  # plaintext warning, certificate watcher
    ... link.client ...                                 # one redis.asyncio.Redis for the owner's life
    await link.close()

redis-py keeps the TLS context of a connection for ever (redis_secure.py), so when our
certificate, key or CA file changes (authgw.security.CertificateWatcher, checked every
second) the link builds a new connection pool with a new context and swaps it into the
same client: calls that start after the swap connect with the new certificate, calls in
flight finish on their old connection, and the old pool is closed `swap_grace_s` later (every
stand-in and settlement Redis call has a deadline well under it). The client object stays
the same, so the scripts registered on it (counters, journal, settlement) follow the swap.
A rotation that does not load (half written, key of another certificate, expired) is logged
and the working pool kept.

The ACL user's password file is watched the same way: a new password is read (in a thread)
and used by every connection opened after, without a restart.

An insecure login logs a `PlaintextWarning` at start and every minute until close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import ConnectionPool, RedisCluster
from redis.exceptions import RedisError

from authgw.security import (
    CertificateError,
    CertificateWatcher,
    FileWatcher,
    PlaintextWarning,
    TlsMaterial,
    check_certificate_expiry,
)
from standin.redis_config import RedisRole, RedisSettings
from standin.redis_io import (
    load_login_material,
    make_redis_client,
    password_file,
    redis_pool,
    set_cluster_tls,
)
from standin.redis_secure import PasswordFile, tls_context

__all__ = ["RedisLink"]

log = logging.getLogger("standin.redis")


class RedisLink:
    """The Redis client of one owner (engine, settlement worker, operator command) and its login."""

    def __init__(
        self,
        settings: RedisSettings,
        role: RedisRole = RedisRole.GATEWAY,
        *,
        watch_interval_s: float = 1.0,
        swap_grace_s: float = 5.0,
    ) -> None:
        """Reads the login's certificate and password files (blocking, once): ConfigError names the key.

        Args:
            role: whose login: the role's own when configured (`[redis.settle]`...), else the gateway's.
        """
        self.settings = settings.for_role(role)
        self.role = role
        login = self.settings.login
        self._swap_grace_s = swap_grace_s
        self._material: TlsMaterial | None = None
        self._credentials: PasswordFile | None = None
        if login.security.tls is not None:
            self._material = load_login_material(self.settings)
        if login.username:
            self._credentials = password_file(self.settings)
        context = tls_context(self._material) if self._material is not None else None
        self.client = make_redis_client(self.settings, tls=context, credentials=self._credentials)
        who = f"as {login.username}" if login.username else "as the default user"
        self._warning = PlaintextWarning(login.security, f"Redis ({role.value}, {who})")
        self._watcher = (
            CertificateWatcher(self._material, self._rotate, interval_s=watch_interval_s)
            if self._material is not None
            else None
        )
        self._password_watcher = (
            FileWatcher(
                [self._credentials.path],
                self._credentials.reload,
                interval_s=watch_interval_s,
                name=f"Redis password file {self._credentials.path}",
            )
            if self._credentials is not None
            else None
        )
        self._retired: list[ConnectionPool] = []

    async def start(self) -> None:
        """Warn if plaintext, check our certificate's expiry, follow its files and the password file."""
        await self._warning.start()
        if self._material is not None:
            with contextlib.suppress(CertificateError):
                await asyncio.to_thread(check_certificate_expiry, self._material.files.cert)
        if self._watcher is not None:
            await self._watcher.start()
        if self._password_watcher is not None:
            await self._password_watcher.start()
        if isinstance(self.client, RedisCluster):
            await self._read_slot_map()

    async def _read_slot_map(self) -> None:
        """A Cluster's slot map and command table now, with time to spare (both are large replies):
        a first call would otherwise spend its short deadline on them. Down: the first call retries."""
        assert isinstance(self.client, RedisCluster)
        try:
            async with asyncio.timeout(self.settings.connect_timeout.total_seconds() * 20):
                await self.client.initialize()
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("Redis Cluster slot map not read at start: %s", exc)

    async def close(self) -> None:
        """Stop following the files, close the client's pool and any pool still retiring; safe twice."""
        if self._password_watcher is not None:
            await self._password_watcher.close()
        if self._watcher is not None:
            await self._watcher.close()
        await self._warning.close()
        await self.client.aclose()
        for pool in self._retired:
            await pool.aclose()
        self._retired.clear()

    async def __aenter__(self) -> RedisLink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _rotate(self, material: TlsMaterial) -> None:
        """A new pool with the new certificate, swapped in; the old one closed after the grace."""
        try:
            context = await asyncio.to_thread(tls_context, material)
        except CertificateError as exc:
            log.error("Redis client certificate not rotated, keeping the current one: %s", exc)  # noqa: TRY400
            return
        self._material = material
        if isinstance(self.client, RedisCluster):
            set_cluster_tls(self.client, context)  # its nodes reconnect with the new context
            old = None
        else:
            old = self.client.connection_pool
            self.client.connection_pool = redis_pool(
                self.settings, tls=context, credentials=self._credentials
            )
            self._retired.append(old)
        log.info(
            "Redis client certificate %s rotated (serial %x): new connections use it",
            material.files.cert,
            material.serial,
        )
        with contextlib.suppress(CertificateError):
            await asyncio.to_thread(check_certificate_expiry, material.files.cert)
        if old is None:
            return
        await asyncio.sleep(self._swap_grace_s)  # calls in flight on the old pool finish meanwhile
        self._retired.remove(old)
        await old.aclose()
