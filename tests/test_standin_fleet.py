"""Fleet safety: several gateways (separate clients, separate processes) share one card's limits.

Run as a script, this module is the second gateway process of the two-process test.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

from test_standin_support import (
    TOKEN_KEY,
    client,
    engine,
    policy,
    request,
    stream_entries,
)

from standin import Reason, StandIn, StandInDecision, WindowLimit
from standin.keys import spend_key
from standin.tokens import CardTokenizer
from standin.types import LimitKind

PAN = "4000056655665556"  # public Visa test number


async def spend_of(port: int, pan: str = PAN) -> list[int]:
    """Amounts in the card's purchase window, as Redis holds them."""
    r = client(port)
    members = await r.zrange(spend_key(CardTokenizer(TOKEN_KEY).token(pan), LimitKind.PURCHASE), 0, -1)
    await r.aclose()
    return [int(m.decode().rsplit(":", 1)[1]) for m in members]


async def burst(e: StandIn, amounts: list[int], prefix: str) -> list[StandInDecision]:
    """Decide one request per amount, all at once, on one card."""
    reqs = [request(PAN, request_id=f"{prefix}-{i}", amount_minor=a) for i, a in enumerate(amounts)]
    return list(await asyncio.gather(*(e.decide(r, Reason.ALL_POOLS_FAILED) for r in reqs)))


async def test_two_engines_never_pass_the_amount_limit(redis_port: int, tmp_path: Path) -> None:
    """200 concurrent requests over two engines: approved total <= limit, and it equals what Redis counted."""
    pol = policy(purchase=WindowLimit(50_000, 1_000))
    rng = random.Random(7)
    amounts = [rng.randint(100, 1_000) for _ in range(200)]
    async with (
        engine(redis_port, tmp_path / "a.db", pol=pol, instance="gw-a") as a,
        engine(redis_port, tmp_path / "b.db", pol=pol, instance="gw-b") as b,
    ):
        results = await asyncio.gather(burst(a, amounts[:100], "a"), burst(b, amounts[100:], "b"))
    approved = [amounts[i] for i, d in enumerate(results[0] + results[1]) if d.approved]
    counted = await spend_of(redis_port)
    assert sum(approved) <= 50_000
    assert sum(approved) > 50_000 - 1_000  # the limit was reached, not avoided
    assert sorted(approved) == sorted(counted)


async def test_two_engines_never_pass_the_count_limit(redis_port: int, tmp_path: Path) -> None:
    """200 concurrent requests over two engines with a count limit of 37: exactly 37 approvals, 37 counted."""
    pol = policy(purchase=WindowLimit(10**9, 37))
    async with (
        engine(redis_port, tmp_path / "a.db", pol=pol, instance="gw-a") as a,
        engine(redis_port, tmp_path / "b.db", pol=pol, instance="gw-b") as b,
    ):
        results = await asyncio.gather(burst(a, [100] * 100, "a"), burst(b, [100] * 100, "b"))
    assert sum(d.approved for d in results[0] + results[1]) == 37
    assert len(await spend_of(redis_port)) == 37


async def test_two_processes_never_pass_the_count_limit(redis_port: int, tmp_path: Path) -> None:
    """Another gateway process and this one decide 100 requests each at once: 50 approved, 50 counted."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable, __file__, str(redis_port), str(tmp_path / "worker.db"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None
    assert (await asyncio.wait_for(worker.stdout.readline(), 30)).strip() == b"ready"
    async with engine(redis_port, tmp_path / "a.db", pol=policy(purchase=WindowLimit(10**9, 50))) as e:
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
        mine = await burst(e, [100] * 100, "here")
    out, _ = await asyncio.wait_for(worker.communicate(), 30)
    theirs = json.loads(out)
    assert worker.returncode == 0
    assert sum(d.approved for d in mine) + sum(theirs) == 50
    assert len(await spend_of(redis_port)) == 50


async def test_same_request_on_two_engines_is_decided_and_counted_once(
    redis_port: int, tmp_path: Path
) -> None:
    """One request id sent to two engines at once gets one decision, one count and one journal entry."""
    req = request(PAN, amount_minor=1_234)
    async with (
        engine(redis_port, tmp_path / "a.db", instance="gw-a") as a,
        engine(redis_port, tmp_path / "b.db", instance="gw-b") as b,
    ):
        da, db = await asyncio.gather(a.decide(req, Reason.FORCED), b.decide(req, Reason.FORCED))
    r = client(redis_port)
    entries = await stream_entries(r)
    await r.aclose()
    assert da == db
    assert await spend_of(redis_port) == [1_234]
    assert [f["decision_id"] for f in entries] == [da.decision_id]


async def _worker_main(port: int, sqlite_path: Path) -> None:
    """The second gateway: wait for "go" on stdin, decide 100 requests, print their approvals as JSON."""
    async with engine(
        port, sqlite_path, pol=policy(purchase=WindowLimit(10**9, 50)), instance="gw-proc"
    ) as e:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        decisions = await burst(e, [100] * 100, "proc")
    print(json.dumps([d.approved for d in decisions]), flush=True)


if __name__ == "__main__":
    asyncio.run(_worker_main(int(sys.argv[1]), Path(sys.argv[2])))
