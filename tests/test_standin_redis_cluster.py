"""Stand-in on a real Redis Cluster (3 masters + 3 replicas, TLS, ACL users): config, WAIT, round trips.

The cluster is the module's (conftest.redis_cluster, ~7 s to start); the single Redis is the
session's. Commands per decision are counted with INFO commandstats on every node, so a change
that adds a round trip (redis-py's COMMAND GETKEYS, a WAIT on its own) shows here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import PAN_MC, PAN_VISA, assert_eventually
from test_security_support import expiring_copy, reissue
from test_settlement_support import new_pans
from test_standin_redis_config import ENV, write
from test_standin_redis_support import GATEWAY, PATIENT_TOML, SETTLE, as_role
from test_standin_support import PAN_KEY, TOKEN_KEY, client, engine, luhn_pan, policy, request

from authgw.config import ConfigError
from chaos.redis_cluster import LocalCluster
from chaos.redis_users import USERNAMES, RedisUsers
from chaos.topology import standin_toml
from standin import Channel, JournalKind, Reason, RedisSettings, StandIn, load_config
from standin.deciding import REPLY_LOST_RULE
from standin.policy import ExposureBudget, Velocity, VelocityLimit
from standin.redis_io import RedisGate, make_redis_client
from standin.settlement.keys import stream_key
from standin.settlement.store import SettleStore

INSECURE = {"url": "redis://127.0.0.1:7000/0", "insecure": True}


def on_cluster(users: RedisUsers, cluster: LocalCluster) -> tuple[int, RedisSettings]:
    """A seed node's port and the gateway's login on the cluster, patient deadlines, WAIT for 1 replica."""
    port = next(n.port for n in cluster.nodes if n.alive())
    return port, dataclasses.replace(as_role(users, port, GATEWAY), cluster=True, wait_replicas=1)


# -- config --------------------------------------------------------------------------------------


def test_cluster_keys_load_with_wait_on_by_default(tmp_path: Path) -> None:
    """cluster = true: seed nodes from url + nodes, WAIT for one replica unless told otherwise."""
    redis = {**INSECURE, "cluster": True, "nodes": ["127.0.0.2:7001", "[::1]:7002"]}
    settings = load_config(write(tmp_path, redis), ENV).redis
    assert settings.cluster
    assert settings.seed_nodes() == [("127.0.0.1", 7000), ("127.0.0.2", 7001), ("[::1]", 7002)]
    assert (settings.durability.replicas, settings.durability.timeout.total_seconds()) == (1, 0.05)
    single = load_config(write(tmp_path, INSECURE), ENV).redis
    assert not single.cluster
    assert single.durability.replicas == 0  # one Redis has no replica to wait for


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"cluster": "yes"}, "redis.cluster"),
        ({"cluster": True, "nodes": ["nohost"]}, "redis.nodes[0]"),
        ({"cluster": True, "nodes": ["h:99999"]}, "redis.nodes[0]"),
        ({"nodes": ["h:7001"]}, "redis.nodes"),
        ({"wait_replicas": -1}, "redis.wait_replicas"),
        ({"wait_timeout": "0s"}, "redis.wait_timeout"),
        ({"cluster": True, "wait_timeout": "100ms"}, "redis.wait_timeout"),  # WAIT outlasts a read
    ],
)
def test_a_bad_cluster_key_is_named(tmp_path: Path, extra: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {**INSECURE, **extra}), ENV)
    assert caught.value.key == key, caught.value


# -- deciding on the cluster -----------------------------------------------------------------------


async def test_decisions_on_the_cluster_are_journaled_in_redis(
    redis_users: RedisUsers, redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """Over TLS as the gateway's ACL user, cards on different masters: decided and journaled in Redis."""
    pans = [luhn_pan(f"4{i:05d}") for i in range(12)]
    port, settings = on_cluster(redis_users, redis_cluster)
    async with engine(port, tmp_path / "l.db", redis_settings=settings) as e:
        decisions = [await e.decide(request(pan, amount_minor=100), Reason.ALL_POOLS_FAILED) for pan in pans]
        repeat = request(pans[0], request_id=decisions[0].request_id, amount_minor=100)
        again = await e.decide(repeat, Reason.ALL_POOLS_FAILED)
    assert {(d.approved, d.journal) for d in decisions} == {(True, JournalKind.REDIS)}
    assert again.decision_id == decisions[0].decision_id  # the idempotency record, on the card's master
    masters = redis_cluster.masters()
    written = {port for port in masters if _stats(redis_cluster, port).get("evalsha")}
    assert len(written) > 1  # the cards' slots are spread over several masters


@contextmanager
def paused_replicas(redis_cluster: LocalCluster) -> Iterator[None]:
    """Every replica SIGSTOPped (replication stalls, their masters keep answering), resumed after.

    First every replica has acknowledged everything: a WAIT that does not follow the new write
    (another connection, or before it) then answers at once, and the test sees it."""
    redis_cluster.wait_acked()
    replicas = [port for port, role, _ in redis_cluster.topology() if role == "replica"]
    pids = [redis_cluster.node(port).pid for port in replicas]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        redis_cluster.wait_ok()


async def test_no_approval_rests_on_a_write_no_replica_has(
    redis_users: RedisUsers, redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """Replicas stalled: DECIDE runs on its master but WAIT sees no replica, so the answer is the
    lost-reply path (a 91 recorded locally), never an approval journaled in Redis.

    Catches: no WAIT, or a WAIT sent on another pooled connection (it waits for nothing and
    answers 1 at once)."""
    port, settings = on_cluster(redis_users, redis_cluster)
    async with engine(port, tmp_path / "l.db", redis_settings=settings) as e:
        warm = await e.decide(request(PAN_MC, amount_minor=100), Reason.ALL_POOLS_FAILED)
        assert (warm.approved, warm.journal) == (True, JournalKind.REDIS)
        with paused_replicas(redis_cluster):
            stalled = await e.decide(request(PAN_VISA, amount_minor=100), Reason.ALL_POOLS_FAILED)
    assert (stalled.response_code.value, stalled.rule, stalled.journal) == (
        "91",
        REPLY_LOST_RULE,
        JournalKind.SQLITE,
    )


# -- commands per decision -------------------------------------------------------------------------


def _stats(cluster: LocalCluster, port: int) -> dict[str, int]:
    return _parse_commandstats(cluster.cli(port, "INFO", "commandstats"))


def _parse_commandstats(info: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line.removeprefix("cmdstat_").partition(":")
            out[name] = int(fields.split(",", 1)[0].removeprefix("calls="))
    return out


_HARNESS = {"info", "config|resetstat", "replconf", "ping", "cluster|nodes", "cluster|info"}
IN_SCRIPTS = {
    "time": 1, "exists": 1, "get": 2, "hmget": 2, "zremrangebyscore": 1, "zrange": 1, "zadd": 1,
    "incr": 1, "hset": 1, "set": 1, "pexpire": 3, "xadd": 1,
}  # fmt: skip
"""What DECIDE and APPEND run inside Redis for a new card's approval (counted by commandstats too; the
second HMGET reads the card's last issuer-reported balance)."""


async def test_commands_per_decision_on_one_redis_and_on_the_cluster(
    redis_users: RedisUsers, redis_cluster: LocalCluster, redis_port: int, tmp_path: Path
) -> None:
    """One new card's approval: EVALSHA DECIDE + EVALSHA APPEND (each with its WAIT on the cluster,
    written in the same packet: still 2 round trips); no COMMAND GETKEYS, no SCRIPT LOAD once warm."""
    pans = [luhn_pan(f"5{i:05d}") for i in range(4)]
    single = client(redis_port)
    try:
        async with engine(redis_port, tmp_path / "one.db") as e:
            await e.decide(request(pans[0], amount_minor=100), Reason.ALL_POOLS_FAILED)  # scripts loaded
            await single.config_resetstat()
            d = await e.decide(request(pans[1], amount_minor=100), Reason.ALL_POOLS_FAILED)
            one = {
                k.removeprefix("cmdstat_"): v["calls"] for k, v in (await single.info("commandstats")).items()
            }
    finally:
        await single.aclose()
    port, settings = on_cluster(redis_users, redis_cluster)
    async with engine(port, tmp_path / "cl.db", redis_settings=settings) as e:
        for pan in pans:  # every master has its scripts
            await e.decide(request(pan, amount_minor=100), Reason.ALL_POOLS_FAILED)
        masters = list(redis_cluster.masters())
        for port in masters:
            redis_cluster.cli(port, "CONFIG", "RESETSTAT")
        c = await e.decide(request(PAN_VISA, request_id="rt-1", amount_minor=100), Reason.ALL_POOLS_FAILED)
        on_masters: Counter[str] = Counter()
        for port in masters:
            on_masters.update(_stats(redis_cluster, port))
    assert d.approved and c.approved
    one = {k: v for k, v in one.items() if k not in _HARNESS}
    cluster = {k: v for k, v in on_masters.items() if k not in _HARNESS}
    print(f"\ncommands per stand-in decision: one Redis {one}; cluster masters {cluster}")
    # Top-level: EVALSHA DECIDE + EVALSHA APPEND; the rest are the scripts' own commands.
    assert one == IN_SCRIPTS | {"evalsha": 2}
    # The same, plus one WAIT after each (same connection, same packet: still 2 round trips),
    # and the harness's own redis-cli logins (one per master read). No COMMAND, no SCRIPT LOAD.
    assert cluster == one | {"wait": 2, "auth": len(masters)}


async def test_settlement_waits_on_the_stream_node_without_command_getkeys(
    redis_users: RedisUsers, redis_cluster: LocalCluster
) -> None:
    """A drained partition's blocking XREADGROUP goes straight to the stream's master (no COMMAND
    GETKEYS: redis-py 8.1 sends two for a plain xreadgroup()), and reads what is appended meanwhile."""
    port, gateway = on_cluster(redis_users, redis_cluster)
    partition = 4242  # a stream no decision of the module's other tests appends to
    redis = make_redis_client(dataclasses.replace(gateway, login=redis_users.settings(port, SETTLE).login))
    appender = make_redis_client(gateway)
    store = SettleStore(RedisGate(redis, timedelta(seconds=5)), group="bench", worker_id="w", settler="gw")
    try:
        assert await store.read_new(partition, 10, block_ms=0) == []  # the group is created, slot map read
        masters = list(redis_cluster.masters())
        for port in masters:
            redis_cluster.cli(port, "CONFIG", "RESETSTAT")
        assert await store.read_new(partition, 10, block_ms=20) == []
        counted: Counter[str] = Counter()
        for port in masters:
            counted.update(_stats(redis_cluster, port))
        reading = asyncio.create_task(store.read_new(partition, 10, block_ms=3000))
        await asyncio.sleep(0.3)  # the read is blocked on the empty stream
        entry_id = await appender.xadd(stream_key(partition), {"decision_id": "d-1"})
        entries = await asyncio.wait_for(reading, 5)
    finally:
        await redis.aclose()
        await appender.aclose()
    # The _READ script (EVALSHA, its own XREADGROUP), then the blocking XREADGROUP; the harness's
    # redis-cli logins. Nothing else from the client.
    print(f"\ncommands of an empty read on the cluster: {dict(counted)}")
    assert {k: v for k, v in counted.items() if k not in _HARNESS} == {
        "evalsha": 1, "xreadgroup": 2, "auth": len(masters),
    }  # fmt: skip
    assert [(e.stream_id, e.fields) for e in entries] == [(entry_id.decode(), {"decision_id": "d-1"})]


# -- certificate rotation on the cluster ----------------------------------------------------------


async def test_a_rotated_certificate_reaches_every_cluster_node(
    redis_users: RedisUsers, redis_cluster: LocalCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway's certificate, about to expire, is replaced while stand-in decides on the cluster;
    once it has expired and every master dropped the gateway's connections, the nodes' new
    connections present the new one (set_cluster_tls): every decision stays in Redis."""
    caplog.set_level(logging.INFO, logger="standin.redis")
    pki = redis_users.pki.directory
    mine, expires = expiring_copy(pki, "gateway-client", tmp_path / "certs", seconds=5)
    port, _ = on_cluster(redis_users, redis_cluster)
    section = {**redis_users.redis_section((GATEWAY,)), **PATIENT_TOML, "cluster": True}
    section |= {"cert": str(mine.cert), "key": str(mine.key), "wait_timeout": "500ms"}
    path = tmp_path / "standin.toml"
    path.write_text(standin_toml(redis_users.url(port), redis=section, token_key=TOKEN_KEY, pan_key=PAN_KEY))
    async with StandIn.from_config(load_config(path, {})) as e:
        before = [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in new_pans(3)]
        reissue(pki, "gateway-client", mine)

        def rotated() -> None:
            assert "Redis client certificate" in caplog.text and "rotated" in caplog.text

        await assert_eventually(rotated, timeout_s=5)
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
        for master in redis_cluster.masters():
            redis_cluster.cli(master, "CLIENT", "KILL", "USER", USERNAMES[GATEWAY])
        after = [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in new_pans(6)]
    assert [d.journal for d in before + after] == [JournalKind.REDIS] * 9


# -- the fleet-wide steps on the cluster ------------------------------------------------------------

RISK = policy(
    exposure_budgets=(ExposureBudget("cluster", 1_000_000, period=timedelta(hours=1), shards=4),),
    velocity=Velocity(
        merchant={c: VelocityLimit(1_000, 100_000_000) for c in Channel},
        terminal={c: VelocityLimit(1_000, 100_000_000) for c in Channel},
    ),
)


async def test_velocity_and_budget_writes_are_waited_for_like_decide(
    redis_users: RedisUsers, redis_cluster: LocalCluster, tmp_path: Path
) -> None:
    """With a budget and velocity windows each decision runs 4 scripts (velocity, reserve, DECIDE,
    APPEND), each followed by its WAIT. Replicas stalled: the velocity step's WAIT fails first, so
    the engine decides locally (an approval in the local journal), not on a card record whose
    window counts rest on one master (without WAIT there: DECIDE's WAIT fails, a 91 reply lost)."""
    port, settings = on_cluster(redis_users, redis_cluster)
    pans = [luhn_pan(f"6{i:05d}") for i in range(6)]
    async with engine(port, tmp_path / "l.db", pol=RISK, redis_settings=settings) as e:
        for pan in pans[:4]:  # every master has its scripts
            assert (await e.decide(request(pan, amount_minor=100), Reason.ALL_POOLS_FAILED)).approved
        masters = list(redis_cluster.masters())
        for master in masters:
            redis_cluster.cli(master, "CONFIG", "RESETSTAT")
        counted = await e.decide(request(pans[4], amount_minor=100), Reason.ALL_POOLS_FAILED)
        on_masters: Counter[str] = Counter()
        for master in masters:
            on_masters.update(_stats(redis_cluster, master))
        with paused_replicas(redis_cluster):
            stalled = await e.decide(request(pans[5], amount_minor=100), Reason.ALL_POOLS_FAILED)
    assert (counted.approved, counted.journal) == (True, JournalKind.REDIS)
    assert (on_masters["evalsha"], on_masters["wait"]) == (4, 4), on_masters
    assert (stalled.rule, stalled.journal) == ("approved", JournalKind.SQLITE)
