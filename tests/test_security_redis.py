"""redis-py over mutual TLS with our keyword arguments, against a real redis-server with TLS on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.exceptions
from redis.asyncio import ConnectionPool, Redis
from test_security_support import files, make_certs

from authgw.security import redis_tls_kwargs
from chaos.processes import ManagedProcess, free_port

DEADLINES = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development CA tree for the module."""
    return make_certs(tmp_path_factory.mktemp("security-redis"))


@pytest.fixture(scope="module")
def tls_redis(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """redis-server on a TLS port only, requiring fleet client certificates; stopped by its PID."""
    port = free_port()
    argv = [
        "redis-server",
        "--bind", "127.0.0.1",
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(certs / "redis.crt"),
        "--tls-key-file", str(certs / "redis.key"),
        "--tls-ca-cert-file", str(certs / "ca.crt"),
        "--tls-auth-clients", "yes",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
    ]  # fmt: skip
    proc = ManagedProcess(f"redis-tls-{port}", argv, port, tmp_path_factory.mktemp("redis-tls")).start()
    yield proc
    proc.stop()


async def test_our_kwargs_connect_over_mutual_tls(certs: Path, tls_redis: ManagedProcess) -> None:
    """The gateway's certificate and our kwargs reach Redis; the name is checked against the IP SAN."""
    kwargs = redis_tls_kwargs(files(certs, "gateway-client"))
    pool = ConnectionPool.from_url(f"rediss://127.0.0.1:{tls_redis.port}/0", **kwargs, **DEADLINES)
    client = Redis(connection_pool=pool)
    try:
        assert await client.ping()
        assert await client.set("authgw:security:test", "1")
    finally:
        await client.aclose()
        await pool.disconnect()


@pytest.mark.parametrize(
    ("who", "alert"), [("no certificate", "CERTIFICATE_REQUIRED"), ("rogue CA", "UNKNOWN_CA")]
)
async def test_client_without_a_fleet_certificate_is_refused(
    certs: Path, tls_redis: ManagedProcess, who: str, alert: str
) -> None:
    """Without a client certificate, or with one from another CA, Redis refuses the connection."""
    kwargs: dict[str, object] = dict(redis_tls_kwargs(files(certs, "rogue-acquirer-ACQ001")))
    if who == "no certificate":
        del kwargs["ssl_certfile"], kwargs["ssl_keyfile"]
    pool = ConnectionPool.from_url(f"rediss://127.0.0.1:{tls_redis.port}/0", **kwargs, **DEADLINES)
    client = Redis(connection_pool=pool)
    try:
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            await client.ping()
        # The server's refusal: its TLS alert or, when TLS 1.3 lets the client finish first, a reset.
        message = str(caught.value)
        assert alert in message or "Connection reset by peer" in message, message
    finally:
        await client.aclose()
        await pool.disconnect()
