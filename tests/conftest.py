"""Session fixtures: real etcd and Redis servers on free loopback ports, stopped by PID."""

from __future__ import annotations

import fcntl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from test_standin_support import client, flush_standin_keys

from chaos.pki import DevPki
from chaos.processes import ManagedProcess, start_etcd, start_redis
from chaos.redis_cluster import LocalCluster, start_redis_cluster
from chaos.redis_users import RedisUsers

# `make test` runs two pytest workers (`-n 2 --dist loadfile`): the suite mostly waits on the
# servers it starts. Each module runs whole on one worker, in its order (its module fixtures start
# once). The chaos experiments (availability criteria, a full topology each) and the CPU-bound
# fuzzers take one lock shared by the workers, per module, so no two of them share the two cores: a worker
# that reaches one while the other runs one waits. (xdist 3.8's `loadgroup` would group them, but
# with pytest 9 it groups nothing: it renames `item._nodeid`, which pytest 9 no longer reads.)
_CPU_BOUND = frozenset({"test_edge_fuzz", "test_iso8583_fuzz", "test_iso8583_listener_fuzz"})


@pytest.fixture(scope="module", autouse=True)
def _one_heavy_module_at_a_time(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Module-scoped and autouse, so taken before a module's own fixtures (some run a whole chaos
    experiment at module scope)."""
    heavy = request.node.get_closest_marker("chaos") is not None or request.module.__name__ in _CPU_BOUND
    if not heavy:
        yield
        return
    # the workers' base temp dirs share a parent (popen-gw0, popen-gw1): one lock file per run
    with (tmp_path_factory.getbasetemp().parent / "heavy-tests.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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


@pytest.fixture(scope="module")
def redis_users(tmp_path_factory: pytest.TempPathFactory) -> RedisUsers:
    """A development PKI and the harness's Redis users (passwords in files, mode 0600), per module."""
    root = tmp_path_factory.mktemp("redis-users")
    return RedisUsers(root / "users", DevPki(root / "pki"))


@pytest.fixture(scope="module")
def tls_redis(redis_users: RedisUsers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A module's redis-server on a TLS port only (fleet client certificates required), with the ACL
    file of every stand-in role plus the harness admin; stopped by its PID."""
    proc = start_redis(
        tmp_path_factory.mktemp("secure-redis"),
        tls=redis_users.server_files(),
        aclfile=redis_users.write_aclfile(),
    )
    yield proc
    proc.stop()


@pytest.fixture
async def tls_admin(redis_users: RedisUsers, tls_redis: ManagedProcess) -> AsyncIterator[Redis]:
    """tls_redis's harness admin, with no stand-in key left and an empty ACL log."""
    r = redis_users.admin_client(tls_redis.port)
    await flush_standin_keys(r)
    await r.acl_log_reset()
    yield r
    await r.aclose()


@pytest.fixture(scope="module")
def redis_cluster(
    redis_users: RedisUsers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """A module's Redis Cluster, 3 masters + 3 replicas over TLS with the ACL users (slow: ~7 s to start)."""
    cluster = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"), users=redis_users)
    yield cluster
    cluster.stop()
