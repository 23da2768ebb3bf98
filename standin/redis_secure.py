"""The secure half of the boundary with redis-py: our TLS context, a connection that uses it, the password.

Read in redis-py 8.1 (redis/asyncio/connection.py) before writing this:

* `SSLConnection` builds its `ssl.SSLContext` on its first connect, from the file *paths* it
  was given, and keeps it for every reconnect of that connection object, which the pool
  keeps for ever. A rotated client certificate therefore never reaches Redis through an
  existing pool: the owner (redis_link.py) builds a new pool with a new context.
* That context starts from `ssl.create_default_context()`, i.e. the system's CA store
  *plus* ours: any public CA could then vouch for "Redis". `TlsConnection` uses a context
  built here instead, trusting only the CA file of the login.
* `ConnectionPool.from_url("rediss://...")` forces its own `SSLConnection` class, so the
  pool is built from `parse_url` with our class.
* Credentials go through a `CredentialProvider`, asked on every new connection
  (`get_credentials_async`). `PasswordFile` answers from memory at once; its owner
  (redis_link.py) re-reads the file when it changes, so a new password needs no restart.
* A connect cancelled half way (stand-in's 120 ms deadline cancels the call) is left
  connected by redis-py unless a RedisError escaped: a socket that never sent AUTH then
  goes back to the pool, and the next command on it is refused ("unauthenticated multibulk
  length", NOAUTH). `CancelSafeConnect` closes it instead. Found by the chaos experiment
  redis-down over TLS, where handshakes under load outlast the deadline.

Blocking file reads (`tls_context`, `PasswordFile.read`) run before the loop serves, or in
`asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redis.asyncio.connection import SSLConnection
from redis.credentials import CredentialProvider

from authgw.security import CertificateError, TlsMaterial

__all__ = ["CancelSafeConnect", "PasswordFile", "TlsConnection", "tls_context"]

log = logging.getLogger("standin.redis")


def tls_context(material: TlsMaterial) -> ssl.SSLContext:
    """A client context: TLS 1.2+, Redis's certificate checked against our CA only, ours presented.

    Reads the certificate and key files again (Python's ssl loads a certificate chain from a
    path only): CertificateError if they changed in between and no longer match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=material.ca_pem.decode("ascii"))
    try:
        context.load_cert_chain(material.files.cert, material.files.key)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(material.files.cert, f"cannot be loaded with its key: {exc}") from exc
    return context


class CancelSafeConnect:
    """Closes a connection whose log-in (AUTH, SELECT...) did not finish, whatever stopped it."""

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        try:
            await super().on_connect_check_health(check_health=check_health)  # type: ignore[misc]
        except BaseException:
            # Cancelled (our deadline) or failed: never pool a socket that skipped AUTH.
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise


class TlsConnection(CancelSafeConnect, SSLConnection):
    """redis.asyncio's TLS connection, with the context given to its pool instead of one of its own."""

    def __init__(self, *, tls_context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tls_context = tls_context

    def use_context(self, tls_context: ssl.SSLContext) -> None:
        """The context of this connection's next connect (a rotated certificate, on a Cluster node)."""
        self._tls_context = tls_context

    def _connection_arguments(self) -> Mapping[str, Any]:
        # The host of the URL is the name Redis's certificate must carry (an IP SAN for an IP).
        return {"host": self.host, "port": self.port, "ssl": self._tls_context}


class PasswordFile(CredentialProvider):
    """An ACL user and the password in a file, kept in memory; `reload()` reads the file again.

    The file holds the password alone; one trailing newline is dropped. If a reload fails
    (the file is being replaced), the last password read is kept and the failure logged.
    New connections are never kept waiting on the disk: they get the password in memory.
    """

    def __init__(self, username: str, path: Path) -> None:
        """Reads the file once: OSError or ValueError (empty file) here name the problem."""
        self.username = username
        self.path = path
        self._password = self.read()

    def read(self) -> str:
        """The password now in the file (blocking)."""
        mode = self.path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "Redis password file %s is readable by others (mode %o): chmod 600 it", self.path, mode
            )
        text = self.path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        if not text:
            raise ValueError(f"{self.path} is empty")
        return text

    async def reload(self) -> None:
        """Read the file again (in a thread); keep the last password if it cannot be read."""
        try:
            self._password = await asyncio.to_thread(self.read)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.error("Redis password file not re-read, keeping the last password: %s", exc)  # noqa: TRY400
            return
        log.info("Redis password file %s re-read: new connections use it", self.path)

    def get_credentials(self) -> tuple[str, str]:
        return (self.username, self._password)

    async def get_credentials_async(self) -> tuple[str, str]:
        return (self.username, self._password)

    def __repr__(self) -> str:
        return f"PasswordFile(username={self.username!r}, path={str(self.path)!r})"
