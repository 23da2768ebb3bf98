"""The keyword arguments redis-py needs to reach Redis over mutual TLS with our files.

Checked against redis-py 8.1's asyncio `SSLConnection` / `RedisSSLContext`: a
`rediss://` URL selects `SSLConnection`, and `ConnectionPool.from_url(url,
**kwargs)` passes these on to it. Defaults there are already
`ssl_cert_reqs="required"` and `ssl_check_hostname=True`; they are spelled out
so that a future default cannot weaken them silently.

Two things to know when wiring it:

* Each connection builds its `ssl.SSLContext` on first connect, reading the
  files then (small, blocking reads on the loop, once per connection) and keeps
  it across reconnects. A rotated certificate therefore reaches Redis through a
  new pool: rebuild the client from a `CertificateWatcher` callback, like a
  grpc channel.
* The host in the URL is what the server certificate must name (a SAN IP
  works for 127.0.0.1). ACL user and password go in the URL or as
  `username` / `password`: TLS authenticates the link, the ACL user limits the
  commands and keys.
"""

from __future__ import annotations

import ssl
from typing import Literal, TypedDict

from authgw.security.tls import TlsFiles

__all__ = ["RedisTlsKwargs", "redis_tls_kwargs"]


class RedisTlsKwargs(TypedDict):
    """The TLS keyword arguments of redis-py's `SSLConnection`, as `redis_tls_kwargs` fills them."""

    ssl_certfile: str
    ssl_keyfile: str
    ssl_ca_certs: str
    ssl_cert_reqs: Literal["required"]
    ssl_check_hostname: bool
    ssl_min_version: ssl.TLSVersion


def redis_tls_kwargs(files: TlsFiles) -> RedisTlsKwargs:
    """For `redis.asyncio.ConnectionPool.from_url("rediss://host:port/0", **redis_tls_kwargs(files))`."""
    return RedisTlsKwargs(
        ssl_certfile=str(files.cert),
        ssl_keyfile=str(files.key),
        ssl_ca_certs=str(files.ca),
        ssl_cert_reqs="required",
        ssl_check_hostname=True,
        ssl_min_version=ssl.TLSVersion.TLSv1_2,
    )
