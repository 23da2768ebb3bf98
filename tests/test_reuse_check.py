"""The issuer path's reused-id check (gateway/reuse_check.py) against a real Redis and local journal:
when it asks, and what it answers."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from test_standin_support import FakeClock, engine, luhn_pan, request

from chaos.processes import free_port, start_redis
from gateway.reuse_check import ReuseCheck
from standin import Reason
from standin.types import JournalKind

PAN = luhn_pan("4610000000")


def on(check: ReuseCheck) -> bool:
    """Whether the check asks (a call: mypy would narrow the property across the test's steps)."""
    return check.active


async def test_it_asks_only_while_decisions_wait_for_their_advice(redis_port: int, tmp_path: Path) -> None:
    """Nothing journaled and no stand-in answer lately: off (the issuer path pays nothing). A stand-in
    decision here turns it on at once; one in the fleet's journal, at the next look."""
    clock = FakeClock()
    async with engine(redis_port, tmp_path / "l.db") as e:
        check = ReuseCheck(e, recent_s=10.0, clock=clock)
        assert on(check)  # before the first look: an outage may have just ended
        await check.look()
        assert not on(check)
        check.note_standin()
        assert on(check)
        clock.now += 11
        assert not on(check)
        await e.decide(request(PAN), Reason.ALL_POOLS_FAILED)  # another gateway, as far as `check` knows
        await check.look()
        assert on(check)
        off = ReuseCheck(e, enabled=False, clock=clock)  # [standin] reuse_check = false
        off.note_standin()
        await off.look()
        assert not on(off)


async def test_a_decision_on_this_gateways_local_journal_refuses_a_reuse(tmp_path: Path) -> None:
    """Redis away (nothing listens on its port): the local decision's record refuses the reuse."""
    async with engine(free_port(), tmp_path / "l.db") as e:
        check = ReuseCheck(e)
        original = request(PAN, amount_minor=100)
        decision = await e.decide(original, Reason.ALL_POOLS_FAILED)
        assert decision.journal is JournalKind.SQLITE
        reuse = request(PAN, amount_minor=200, request_id=original.request_id)
        assert await check.refuses(reuse)
        assert not await check.refuses(original)


async def test_it_refuses_other_content_under_a_recorded_id_only(redis_port: int, tmp_path: Path) -> None:
    """Recorded in Redis: other content refused, the same content not, an unknown id not."""
    async with engine(redis_port, tmp_path / "l.db") as e:
        check = ReuseCheck(e)
        original = request(PAN, amount_minor=100)
        await e.decide(original, Reason.ALL_POOLS_FAILED)
        reuse = request(PAN, amount_minor=90_000_000, mcc="7995", request_id=original.request_id)
        assert await check.refuses(reuse)
        assert not await check.refuses(original)
        assert not await check.refuses(request(PAN))
    assert (check.checked, check.refused, check.unreadable) == (3, 1, 0)


async def test_a_check_that_cannot_reach_redis_lets_the_request_go_on_and_stops_asking_redis(
    tmp_path: Path,
) -> None:
    """Redis stops while the engine believes it up (nothing decided since): the first check is
    unreadable (the request goes on) and marks Redis down, so the next ones read the local journal
    only instead of each waiting for Redis's deadline."""
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis")
    try:
        async with engine(redis.port, tmp_path / "l.db") as e:
            check = ReuseCheck(e)
            await asyncio.to_thread(redis.stop)
            assert (await e.status()).redis_up
            assert not await check.refuses(request(PAN))
            assert check.unreadable == 1
            assert not (await e.status()).redis_up
            assert not await check.refuses(request(PAN))
            assert check.unreadable == 1
    finally:
        await asyncio.to_thread(redis.stop)


async def test_a_stalled_redis_costs_the_request_a_small_share_of_its_time_only(tmp_path: Path) -> None:
    """Redis stopped (SIGSTOP): the check gives up after its share of the request's time (`late`)
    and the request goes on; the read itself is left to finish once Redis resumes, so it is
    neither counted unreadable nor cancelled."""
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis")
    try:
        async with engine(redis.port, tmp_path / "l.db") as e:
            check = ReuseCheck(e)
            await check.refuses(request(PAN))  # connected, warm
            redis.signal(signal.SIGSTOP)
            try:
                assert not await check.refuses(request(PAN), deadline=time.monotonic() + 0.05)
                assert (check.late, check.unreadable) == (1, 0)
            finally:
                redis.signal(signal.SIGCONT)
            await check.close()
    finally:
        await asyncio.to_thread(redis.stop)
