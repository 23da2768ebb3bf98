"""Acquirer advices in stand-in, against real Redis: recorded approved, counted, idempotent, local mode."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_standin_support import IMPATIENT, engine, journal_of, luhn_pan, policy, request

from chaos.processes import free_port, start_redis
from standin import Reason, ResponseCode, WindowLimit
from standin.errors import ReusedRequestIdError
from standin.types import AcquirerAdviceKind, JournalKind, ReversalReason, StandInReversal

WINDOW_50 = policy(purchase=WindowLimit(5_000, 5))  # 50.00 in the window, five approvals
FORCED = AcquirerAdviceKind.FORCED_POST
OFFLINE = AcquirerAdviceKind.OFFLINE_APPROVED


async def test_an_advice_over_the_limit_is_recorded_approved_and_journaled(
    redis_port: int, tmp_path: Path
) -> None:
    """60.00 forced on a 50.00 window: approved under its rule with the acquirer's code, one journal entry."""
    card = luhn_pan("4990")
    advice = request(card, amount_minor=6_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        decision = await e.advise(advice, FORCED, "V12345")
    assert (decision.response_code, decision.rule, decision.approval_code) == (
        ResponseCode.APPROVED, "acquirer.forced_post", "V12345",
    )  # fmt: skip
    assert decision.reason is Reason.ACQUIRER_ADVICE and decision.journal is JournalKind.REDIS
    entries = await journal_of(redis_port, card)
    assert [(f["decision_id"], f["rule"], f["amount_minor"]) for f in entries] == [
        (decision.decision_id, "acquirer.forced_post", "6000")
    ]


async def test_an_offline_advice_leaves_the_card_less_in_stand_in(redis_port: int, tmp_path: Path) -> None:
    """30.00 spent offline on a 50.00 window: a 30.00 stand-in request that would pass is declined 61."""
    card, fresh_card = luhn_pan("4991"), luhn_pan("4992")
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        await e.advise(request(card, amount_minor=3_000), OFFLINE)
        after = await e.decide(request(card, amount_minor=3_000), Reason.ALL_POOLS_FAILED)
        control = await e.decide(request(fresh_card, amount_minor=3_000), Reason.ALL_POOLS_FAILED)
    assert control.approved
    assert (after.response_code, after.rule) == (ResponseCode.EXCEEDS_AMOUNT_LIMIT, "limit.amount.purchase")


async def test_a_repeated_advice_is_the_same_decision_journaled_once(redis_port: int, tmp_path: Path) -> None:
    """The same advice twice (0120 then 0121): one decision id, the repeat says so, one journal entry."""
    card = luhn_pan("4993")
    advice = request(card, amount_minor=1_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        first = await e.advise(advice, OFFLINE, "Y1CODE")
        again = await e.advise(advice, OFFLINE, "Y1CODE")
        # five approvals fit the window: the repeat did not take one
        others = [await e.decide(request(card, amount_minor=100), Reason.ALL_POOLS_FAILED) for _ in range(4)]
    assert (again.decision_id, first.repeated, again.repeated) == (first.decision_id, False, True)
    assert all(d.approved for d in others)
    assert [f["rule"] for f in await journal_of(redis_port, card)].count("acquirer.offline") == 1


async def test_a_reused_request_id_with_other_content_is_refused(redis_port: int, tmp_path: Path) -> None:
    """An advice whose (acquirer, request id) was advised for another amount: refused, nothing counted."""
    card = luhn_pan("4994")
    advice = request(card, amount_minor=1_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        await e.advise(advice, FORCED)
        with pytest.raises(ReusedRequestIdError):
            await e.advise(dataclasses.replace(advice, amount_minor=2_000), FORCED)
        fits = await e.decide(request(card, amount_minor=4_000), Reason.ALL_POOLS_FAILED)
    assert fits.approved  # 10.00 + 40.00: the refused 20.00 was not counted
    assert len(await journal_of(redis_port, card)) == 2


async def test_an_advice_supersedes_a_stand_in_decline_of_the_same_request(
    redis_port: int, tmp_path: Path
) -> None:
    """Stand-in declined 61, the merchant forced it: a new approved decision, journaled after the decline;
    a later stand-in repeat of the request is answered with the advice's approval."""
    card = luhn_pan("4995")
    big = request(card, amount_minor=6_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        declined = await e.decide(big, Reason.ALL_POOLS_FAILED)
        forced = await e.advise(big, FORCED, "V00001")
        repeat = await e.decide(big, Reason.ALL_POOLS_FAILED)
    assert not declined.approved and forced.approved and forced.decision_id != declined.decision_id
    assert (repeat.decision_id, repeat.approval_code) == (forced.decision_id, "V00001")
    entries = await journal_of(redis_port, card)
    assert [(f["decision_id"], f["response_code"]) for f in entries] == [
        (declined.decision_id, "61"), (forced.decision_id, "00"),
    ]  # fmt: skip


async def test_a_reversal_of_an_advice_releases_its_window(redis_port: int, tmp_path: Path) -> None:
    """A 40.00 advice fully reversed: applied (journaled behind it), and 40.00 fits the window again."""
    card = luhn_pan("4996")
    advice = request(card, amount_minor=4_000)
    undo = StandInReversal(
        acquirer_id=advice.acquirer_id, reversal_id="rev-advice-1", original_request_id=advice.request_id,
        pan=card, final_amount_minor=0, currency=advice.currency, reason=ReversalReason.CARDHOLDER_CANCEL,
        transmitted_at=advice.transmitted_at,
    )  # fmt: skip
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        await e.advise(advice, OFFLINE)
        outcome = await e.reverse(undo, store=True)
        again = await e.decide(request(card, amount_minor=4_000), Reason.ALL_POOLS_FAILED)
    assert outcome.status.value == "applied" and again.approved


async def test_redis_away_an_advice_is_recorded_locally_counted_and_moved(tmp_path: Path) -> None:
    """No Redis: the advice, above the local limit, is approved, journaled in SQLite and counted there (a
    local stand-in request is declined); once Redis is back it moves to the stream with its rule."""
    port = free_port()
    card = luhn_pan("4997")
    pol = policy(purchase=WindowLimit(20_000, 5))  # locally 25 %: 50.00
    async with engine(port, tmp_path / "l.db", pol=pol, redis_settings=IMPATIENT) as e:
        local = await e.advise(request(card, amount_minor=6_000), OFFLINE)  # above the local 50.00
        after = await e.decide(request(card, amount_minor=2_000), Reason.ALL_POOLS_FAILED)
        redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
        try:
            await e.move_backlog()  # or the engine's recovery task already moved them

            async def moved() -> None:
                assert len(await journal_of(port, card)) == 2

            await assert_eventually(moved, timeout_s=10.0, interval_s=0.1)
            entries = await journal_of(port, card)
        finally:
            await asyncio.to_thread(redis.stop)
    assert local.approved and local.journal is JournalKind.SQLITE
    assert after.response_code is ResponseCode.EXCEEDS_AMOUNT_LIMIT
    assert [(f["rule"], f["response_code"]) for f in entries] == [
        ("acquirer.offline", "00"), ("limit.amount.purchase", "61"),
    ]  # fmt: skip
