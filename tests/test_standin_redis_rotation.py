"""Certificates and passwords that change while stand-in runs, connects cut short, and Redis Cluster."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.exceptions
from helpers import PAN_MC, PAN_VISA, assert_eventually
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.credentials import CredentialProvider
from test_security_support import expiring_copy, reissue
from test_settlement_support import (
    new_pans,
)
from test_standin_redis_support import (
    GATEWAY,
    assert_nothing_refused,
    standin_file,
)
from test_standin_support import request

from chaos.processes import ManagedProcess, start_redis
from chaos.redis_users import USERNAMES, RedisUsers
from standin import JournalKind, Reason, StandIn, StandInDecision, load_config, lua
from standin import keys as k
from standin.acl import acl_line, acl_lines
from standin.redis_io import make_redis_client

# -- rotation --------------------------------------------------------------------------------------


async def test_rotating_the_client_certificate_keeps_deciding(
    redis_users: RedisUsers,
    tls_redis: ManagedProcess,
    tls_admin: Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway's certificate, about to expire, is replaced on disk while stand-in decides: every
    decision stays in Redis, and once the old certificate has expired and Redis dropped every
    connection, stand-in reconnects with the new one (Redis would refuse the old)."""
    caplog.set_level(logging.INFO, logger="standin.redis")
    pki = redis_users.pki.directory
    mine, expires = expiring_copy(pki, "gateway-client", tmp_path / "certs", seconds=6)
    path = standin_file(
        tmp_path, redis_users, tls_redis.port, (GATEWAY,), cert=str(mine.cert), key=str(mine.key)
    )
    decisions: list[StandInDecision] = []
    async with StandIn.from_config(load_config(path, {})) as e:
        stop = asyncio.Event()

        async def keep_deciding() -> None:
            while not stop.is_set():
                decisions.append(await e.decide(request(new_pans(1)[0]), Reason.ALL_POOLS_FAILED))
                await asyncio.sleep(0.05)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(keep_deciding())
            await asyncio.sleep(0.5)
            reissue(pki, "gateway-client", mine)

            def rotated() -> None:
                assert "Redis client certificate" in caplog.text and "rotated" in caplog.text

            await assert_eventually(rotated, timeout_s=5)
            await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
            stop.set()
        during = len(decisions)
        await tls_admin.execute_command("CLIENT", "KILL", "USER", USERNAMES[GATEWAY])
        decisions += [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in new_pans(5)]
    assert during > 20
    assert [d.journal for d in decisions] == [JournalKind.REDIS] * len(decisions)
    assert await tls_admin.xlen(k.stream_key(0)) == len(decisions)
    await assert_nothing_refused(tls_admin)


async def test_a_new_password_is_used_without_a_restart(
    redis_users: RedisUsers,
    tls_redis: ManagedProcess,
    tls_admin: Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The password file is watched: give the user a second password, write it to the file, drop the
    first; once Redis dropped every connection stand-in logs in again with the new one."""
    caplog.set_level(logging.INFO, logger="standin.redis")
    name, old = USERNAMES[GATEWAY], redis_users.passwords[USERNAMES[GATEWAY]]
    secret = tmp_path / "gateway.password"
    secret.write_text(old + "\n")
    path = standin_file(tmp_path, redis_users, tls_redis.port, (GATEWAY,), password_file=str(secret))
    try:
        async with StandIn.from_config(load_config(path, {})) as e:
            before = await e.decide(request(PAN_VISA), Reason.ALL_POOLS_FAILED)
            await tls_admin.execute_command("ACL", "SETUSER", name, ">rotated-password")
            secret.write_text("rotated-password\n")

            def reread() -> None:
                assert "password file" in caplog.text and "re-read" in caplog.text

            await assert_eventually(reread)
            await tls_admin.execute_command("ACL", "SETUSER", name, f"<{old}")
            await tls_admin.execute_command("CLIENT", "KILL", "USER", name)
            after = await e.decide(request(PAN_MC), Reason.ALL_POOLS_FAILED)
    finally:
        await tls_admin.execute_command("ACL", "SETUSER", name, f">{old}", "<rotated-password")
    assert (before.journal, after.journal) == (JournalKind.REDIS, JournalKind.REDIS)


class _StuckOnce(CredentialProvider):
    """Credentials that hang the first time they are asked (until cancelled), then answer."""

    def __init__(self, username: str, password: str) -> None:
        self.asked = 0
        self.credentials = (username, password)

    async def get_credentials_async(self) -> tuple[str, str]:
        self.asked += 1
        if self.asked == 1:
            await asyncio.Event().wait()
        return self.credentials


async def test_a_connect_cancelled_before_its_login_is_not_reused(
    redis_users: RedisUsers, tls_redis: ManagedProcess
) -> None:
    """A deadline that cancels a connect after the TLS handshake but before AUTH leaves no socket in
    the pool that would send the next command unauthenticated (NOAUTH)."""
    name = USERNAMES[GATEWAY]
    credentials = _StuckOnce(name, redis_users.passwords[name])
    # No retry: redis-py would hide the unauthenticated socket by reconnecting after NOAUTH, but a
    # script's reply ("unauthenticated multibulk length") is not retried, and fails the decision.
    settings = redis_users.settings(tls_redis.port, GATEWAY, retries=0)
    r = make_redis_client(settings, credentials=credentials)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await r.ping()
        assert await r.ping() is True
        assert credentials.asked == 2  # a new connection logged in
    finally:
        await r.aclose()


# -- Redis Cluster (issue 18) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_node(
    redis_users: RedisUsers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    """A one-node Redis Cluster over TLS whose gateway user has the --cluster rules, and one without."""
    root = tmp_path_factory.mktemp("secure-cluster")
    name = USERNAMES[GATEWAY]
    lines = [
        *acl_lines({GATEWAY: (name, redis_users.passwords[name])}, cluster=True),
        acl_line(
            "plain-gateway",
            redis_users.passwords[name],
            acl_lines({GATEWAY: (name, "x")})[1].split(" ", 4)[4],
        ),
        redis_users.write_aclfile().read_text().splitlines()[-1],  # the harness tls_admin
    ]
    aclfile = root / "users.acl"
    aclfile.write_text("\n".join(lines) + "\n")
    proc = start_redis(root / "redis", cluster=True, tls=redis_users.server_files(), aclfile=aclfile)
    yield proc
    proc.stop()


@pytest.mark.parametrize("username", [USERNAMES[GATEWAY], "plain-gateway"])
async def test_the_cluster_client_needs_the_cluster_rules(
    redis_users: RedisUsers, cluster_node: ManagedProcess, username: str
) -> None:
    """redis-py's cluster client maps the slots and runs stand-in's append script with the --cluster
    rules; without them it cannot even start (CLUSTER SLOTS refused)."""
    tls_admin = redis_users.admin_client(cluster_node.port)
    if b"cluster_slots_assigned:16384" not in await tls_admin.execute_command("CLUSTER", "INFO"):
        await tls_admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

    async def ok() -> None:
        assert b"cluster_state:ok" in await tls_admin.execute_command("CLUSTER", "INFO")

    await assert_eventually(ok)
    await tls_admin.acl_log_reset()
    f = redis_users.pki.files("gateway-client")
    rc = RedisCluster(
        host="127.0.0.1", port=cluster_node.port, ssl=True, ssl_certfile=str(f.cert), ssl_keyfile=str(f.key),
        ssl_ca_certs=str(f.ca), username=username, password=redis_users.passwords[USERNAMES[GATEWAY]],
    )  # fmt: skip
    stream, seen = k.stream_key(0), k.dedupe_key(0, f"d-{username}")
    try:
        if username == "plain-gateway":
            with pytest.raises(redis.exceptions.RedisClusterException):
                await rc.initialize()
            assert [d["object"] for d in await tls_admin.acl_log()] == ["cluster|slots"]
        else:
            appended, _ = await rc.register_script(lua.APPEND)(
                keys=[stream, seen], args=[60_000, '["f","v"]']
            )
            assert appended == 1
            await assert_nothing_refused(tls_admin)
    finally:
        await rc.aclose()
        await tls_admin.aclose()
