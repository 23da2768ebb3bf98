"""The issuer path's reused-id check (gateway/reuse_check.py) against a real Redis and local journal:
when it asks, and what it answers."""

from __future__ import annotations

from pathlib import Path

from test_standin_support import FakeClock, engine, luhn_pan, request

from chaos.processes import free_port
from gateway.reuse_check import ReuseCheck
from standin import Reason
from standin.types import JournalKind

PAN = luhn_pan("4610000000")


async def test_it_asks_only_while_decisions_wait_for_their_advice(redis_port: int, tmp_path: Path) -> None:
    """Nothing journaled and no stand-in answer lately: off (the issuer path pays nothing). A stand-in
    decision here turns it on at once; one in the fleet's journal, at the next look."""
    clock = FakeClock()
    async with engine(redis_port, tmp_path / "l.db") as e:
        check = ReuseCheck(e, recent_s=10.0, clock=clock)
        assert check.active  # before the first look: an outage may have just ended
        await check.look()
        assert not check.active
        check.note_standin()
        assert check.active
        clock.now += 11
        assert not check.active
        await e.decide(request(PAN), Reason.ALL_POOLS_FAILED)  # another gateway, as far as `check` knows
        await check.look()
        assert check.active
        off = ReuseCheck(e, enabled=False, clock=clock)  # [standin] reuse_check = false
        off.note_standin()
        await off.look()
        assert not off.active


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
