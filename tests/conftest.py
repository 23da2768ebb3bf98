"""Session fixtures: real etcd and Redis servers on free loopback ports, stopped by PID."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from test_standin_support import client, flush_standin_keys

from chaos.processes import ManagedProcess, start_etcd, start_redis


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private directory for the session's servers and their logs."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def etcd_server(session_dir: Path) -> Iterator[ManagedProcess]:
    """One etcd node shared by the session (tests use distinct key prefixes or clean up)."""
    proc = start_etcd(session_dir / "etcd")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[ManagedProcess]:
    """One Redis (AOF) shared by the session; tests flush what they use."""
    proc = start_redis(session_dir / "redis")
    yield proc
    proc.stop()


@pytest.fixture
async def redis_port(redis_server: ManagedProcess) -> AsyncIterator[int]:
    """The session Redis with no stand-in keys; yields its port."""
    r = client(redis_server.port)
    await flush_standin_keys(r)
    await r.aclose()
    yield redis_server.port
