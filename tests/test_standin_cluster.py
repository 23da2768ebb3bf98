"""Stand-in on a Redis Cluster node: every script keeps to one hash slot (DESIGN.md, keys.py).

A one-node Redis Cluster owning every slot refuses any command or script whose keys span two
slots (CROSSSLOT), as a real Cluster does, so deciding, journaling and replaying there shows
the key layout is Cluster-ready, and that the answers match those of a single Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers import PAN_MC, PAN_VISA
from redis.exceptions import ResponseError
from test_standin_support import (
    FakeClock,
    client,
    engine,
    policy,
    request,
    stream_entries,
)

from chaos.processes import ManagedProcess, start_redis
from standin import Reason, StandInDecision, StandInRequest, WindowLimit

# Differ between two runs of the same requests by design: fresh random ids and codes, and the
# PAN ciphertext (its AAD is the decision id, its nonce random).
# random, or Redis's own time (TIME, the fleet's clock: a run cannot fix it)
RANDOM_FIELDS = ("decision_id", "approval_code", "pan_enc", "decided_at", "answered_at")


@pytest.fixture(scope="module")
def cluster_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A one-node Redis Cluster."""
    proc = start_redis(tmp_path_factory.mktemp("redis-cluster"), cluster=True)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def cluster_port(cluster_redis: ManagedProcess) -> AsyncIterator[int]:
    """The Cluster node, owning every slot, empty."""
    r = client(cluster_redis.port)
    try:
        if "cluster_slots_assigned:16384" not in (await r.execute_command("CLUSTER", "INFO")).decode():
            await r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        for _ in range(100):
            if "cluster_state:ok" in (await r.execute_command("CLUSTER", "INFO")).decode():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("one-node Redis Cluster never reached cluster_state:ok")
        await r.flushall()  # this module's own server (a multi-key DEL would cross slots)
    finally:
        await r.aclose()
    yield cluster_redis.port


def sequence() -> list[StandInRequest]:
    """Requests covering each kind of decision, with one repeat (fixed ids, so that two runs
    journal the same entries)."""
    first = request(PAN_VISA, request_id="seq-1", amount_minor=4_000)
    return [
        first,
        request(PAN_VISA, request_id="seq-2", amount_minor=4_000),  # approved: 8,000 of 10,000
        request(PAN_VISA, request_id="seq-3", amount_minor=4_000),  # 61: 12,000 > 10,000
        request(PAN_VISA, request_id="seq-4", mcc="7995"),  # 57: gambling, a static decline
        first,  # the same request again: the same decision, no new entry
        request(PAN_MC, request_id="seq-5", amount_minor=100),
        request(PAN_MC, request_id="seq-6", amount_minor=100),
        request(PAN_MC, request_id="seq-7", amount_minor=100),  # 65: a third approval, limit 2
    ]


async def run(port: int, tmp: Path) -> tuple[list[StandInDecision], list[dict[str, str]]]:
    """Decide the sequence on a fresh engine; returns the decisions and the stream entries."""
    pol = policy(purchase=WindowLimit(max_amount_minor=10_000, max_count=2))
    async with engine(port, tmp / "l.db", pol=pol, clock=FakeClock()) as e:
        decisions = [await e.decide(req, Reason.ALL_POOLS_FAILED) for req in sequence()]
    r = client(port)
    try:
        return decisions, await stream_entries(r)
    finally:
        await r.aclose()


def comparable(entry: dict[str, str]) -> dict[str, str]:
    return {k: ("<random>" if k in RANDOM_FIELDS and v else v) for k, v in entry.items()}


async def test_a_cluster_node_decides_and_journals_as_a_single_redis_does(
    redis_port: int, cluster_port: int, tmp_path: Path
) -> None:
    """Same codes, same replay, same entries (random fields aside), every decision journaled in Redis."""
    one, one_entries = await run(redis_port, tmp_path / "single")
    two, two_entries = await run(cluster_port, tmp_path / "cluster")

    codes = ["00", "00", "61", "57", "00", "00", "00", "65"]
    assert [d.response_code.value for d in one] == codes
    assert [d.response_code.value for d in two] == codes
    assert two[4] == two[0]
    assert {d.journal.value for d in two} == {"redis"}  # no script was refused (that would go local)
    assert len(two_entries) == 7
    assert [e["decision_id"] for e in two_entries] == [d.decision_id for d in two[:4] + two[5:]]
    assert [comparable(e) for e in one_entries] == [comparable(e) for e in two_entries]


async def test_the_cluster_node_refuses_keys_of_two_slots(cluster_port: int) -> None:
    """The check above means something: this node refuses a script whose keys span two slots."""
    r = client(cluster_port)
    keys = ["authgw:{t}:req:1", "authgw:{journal:0}:decisions"]
    try:
        with pytest.raises(ResponseError, match="same slot"):
            await r.eval("return 1", len(keys), *keys)
    finally:
        await r.aclose()
