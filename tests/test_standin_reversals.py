"""Reversals in stand-in, against real Redis: released limits, holds, order, idempotency, local mode."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_eventually
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_standin_support import (
    IMPATIENT,
    TOKEN_KEY,
    client,
    engine,
    journal_of,
    luhn_pan,
    policy,
    request,
)

from chaos.processes import free_port, start_redis
from standin import Reason, RedisSettings, ResponseCode, WindowLimit
from standin.keys import spend_key
from standin.tokens import CardTokenizer
from standin.types import LimitKind, ReversalReason, ReversalStatus, StandInRequest, StandInReversal

_ids = itertools.count()
WINDOW_50 = policy(purchase=WindowLimit(5_000, 5))  # 50.00 in the window, five approvals


def reversal(original: StandInRequest, final_minor: int, **overrides: Any) -> StandInReversal:
    fields: dict[str, Any] = {
        "acquirer_id": original.acquirer_id,
        "reversal_id": f"rev-{next(_ids)}",
        "original_request_id": original.request_id,
        "pan": original.pan,
        "final_amount_minor": final_minor,
        "currency": original.currency,
        "reason": ReversalReason.CARDHOLDER_CANCEL,
        "transmitted_at": datetime.now(UTC),
    }
    fields.update(overrides)
    return StandInReversal(**fields)


async def test_a_reversed_approval_frees_its_window(redis_port: int, tmp_path: Path) -> None:
    """Approve 40.00 on a 50.00 window, reverse it, approve 40.00 again: approved; journaled in order."""
    card = luhn_pan("4980")
    first = request(card, amount_minor=4_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        assert (await e.decide(first, Reason.ALL_POOLS_FAILED)).approved
        assert not (await e.decide(request(card, amount_minor=4_000), Reason.ALL_POOLS_FAILED)).approved
        undo = reversal(first, 0)
        outcome = await e.reverse(undo, store=True)
        second = await e.decide(request(card, amount_minor=4_000), Reason.ALL_POOLS_FAILED)
    assert outcome.status is ReversalStatus.APPLIED and second.approved
    kinds = [
        (f["entry"], f.get("response_code", f.get("final_amount_minor")))
        for f in await journal_of(redis_port, card)
    ]
    assert kinds == [("decision", "00"), ("decision", "61"), ("reversal", "0"), ("decision", "00")]


async def test_a_partial_reversal_keeps_what_remains(redis_port: int, tmp_path: Path) -> None:
    """40.00 reversed to 10.00: 40.00 more fits the 50.00 window, 41.00 more does not."""
    card = luhn_pan("4981")
    first = request(card, amount_minor=4_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        await e.decide(first, Reason.ALL_POOLS_FAILED)
        assert (await e.reverse(reversal(first, 1_000), store=True)).status is ReversalStatus.APPLIED
        assert not (await e.decide(request(card, amount_minor=4_100), Reason.ALL_POOLS_FAILED)).approved
        assert (await e.decide(request(card, amount_minor=4_000), Reason.ALL_POOLS_FAILED)).approved


async def test_a_reversal_before_its_original_declines_the_original(redis_port: int, tmp_path: Path) -> None:
    """The reversal comes first: stored (for the issuer), and the original is declined 05, not counted."""
    card = luhn_pan("4982")
    late = request(card, amount_minor=1_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        stored = await e.reverse(reversal(late, 0), store=True)
        original = await e.decide(late, Reason.ALL_POOLS_FAILED)
        others = [
            await e.decide(request(card, amount_minor=1_000), Reason.ALL_POOLS_FAILED) for _ in range(5)
        ]
    assert stored.status is ReversalStatus.STORED and stored.entry_id
    assert (original.response_code, original.rule) == (ResponseCode.DO_NOT_HONOUR, "reversal.before_original")
    assert all(d.approved for d in others)  # the declined original took none of the five approvals


async def test_a_reversal_of_a_decline_has_no_effect_and_is_forwarded(
    redis_port: int, tmp_path: Path
) -> None:
    """Reversing a stand-in decline is acknowledged with no effect (nothing released) and still
    journaled after the decline: the issuer caps the request by it, whatever the request ends at."""
    card = luhn_pan("4983")
    declined = request(card, amount_minor=9_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        assert not (await e.decide(declined, Reason.ALL_POOLS_FAILED)).approved
        outcome = await e.reverse(reversal(declined, 0), store=True)
    assert outcome.status is ReversalStatus.DECLINED and outcome.entry_id
    assert [f["entry"] for f in await journal_of(redis_port, card)] == ["decision", "reversal"]


async def test_a_reversal_of_a_local_decline_reaches_the_issuer_when_another_gateway_approved_it(
    tmp_path: Path,
) -> None:
    """Redis away: gateway A declines a request on its local share and takes its full reversal; the
    acquirer's repeat goes to gateway B, which approves it on its own share. Once both journals move,
    B's approval is advised (told later, it replaces A's decline): A's reversal must be journaled
    too, or the issuer posts an approval the acquirer reversed (chaos-money, holds_not_released)."""
    port = free_port()
    card = luhn_pan("4986")
    spent = request(card, amount_minor=1_000)  # the local share is 12.50 of the 50.00 window
    repeat = request(card, amount_minor=1_000)
    local_only = RedisSettings(probe_interval=timedelta(hours=1))  # each stays local until moved
    async with (
        engine(port, tmp_path / "a.db", pol=WINDOW_50, redis_settings=local_only, instance="gw-a") as a,
        engine(port, tmp_path / "b.db", pol=WINDOW_50, redis_settings=local_only, instance="gw-b") as b,
    ):
        assert (await a.decide(spent, Reason.ALL_POOLS_FAILED)).approved
        assert not (await a.decide(repeat, Reason.ALL_POOLS_FAILED)).approved
        undo = await a.reverse(reversal(repeat, 0), store=True)
        assert (await b.decide(repeat, Reason.ALL_POOLS_FAILED)).approved
        redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
        try:
            await a.move_backlog()
            await b.move_backlog()
            entries = await journal_of(port, card)
        finally:
            await asyncio.to_thread(redis.stop)
    assert undo.status is ReversalStatus.DECLINED
    mine = [
        (f["entry"], f["approved"] if f["entry"] == "decision" else f["final_amount_minor"])
        for f in entries
        if repeat.request_id in (f.get("request_id"), f.get("original_request_id"))
    ]
    assert ("reversal", "0") in mine and ("decision", "1") in mine


@pytest.mark.parametrize("where", ["redis", "local"])
async def test_a_reversal_of_another_amount_under_a_reused_id_leaves_that_approval_alone(
    where: str, redis_port: int, tmp_path: Path
) -> None:
    """The ids of a request that never reached stand-in, reused with another amount and approved: the
    first content's reversal names its own amount, so it is stored for the issuer (which matches by
    amount too), and the approval keeps its window: the same amount again no longer fits (50.00
    window; a gateway's local share is 12.50)."""
    card, amount = (luhn_pan("4987"), 4_000) if where == "redis" else (luhn_pan("4988"), 1_000)
    never_seen = request(card, amount_minor=amount)
    reused = request(card, amount_minor=amount + 1, request_id=never_seen.request_id)
    port = redis_port if where == "redis" else free_port()
    async with engine(port, tmp_path / "l.db", pol=WINDOW_50, redis_settings=IMPATIENT) as e:
        assert (await e.decide(reused, Reason.ALL_POOLS_FAILED)).approved
        outcome = await e.reverse(reversal(never_seen, 0, original_amount_minor=amount), store=True)
        after = await e.decide(request(card, amount_minor=amount), Reason.ALL_POOLS_FAILED)
    assert outcome.status is ReversalStatus.STORED and outcome.entry_id
    assert not after.approved


async def test_a_repeated_reversal_is_applied_once(redis_port: int, tmp_path: Path) -> None:
    """The same reversal id twice: one release, one journal entry, the same status."""
    card = luhn_pan("4984")
    first = request(card, amount_minor=4_000)
    async with engine(redis_port, tmp_path / "l.db", pol=WINDOW_50) as e:
        await e.decide(first, Reason.ALL_POOLS_FAILED)
        undo = reversal(first, 2_000)
        a = await e.reverse(undo, store=True)
        b = await e.reverse(undo, store=True)
    assert a == b and a.status is ReversalStatus.APPLIED
    assert [f["entry"] for f in await journal_of(redis_port, card)] == ["decision", "reversal"]


async def test_an_issuer_reversal_goes_to_the_issuer_unless_the_card_waits(
    redis_port: int, tmp_path: Path
) -> None:
    """No stand-in original: FORWARD when the card has nothing unadvised, STORED (queued) when it has."""
    quiet, busy = luhn_pan("4985"), luhn_pan("4986")
    issuer_decided = request(quiet)
    async with engine(redis_port, tmp_path / "l.db") as e:
        forward = await e.reverse(reversal(issuer_decided, 0), store=False)
        await e.decide(request(busy), Reason.ALL_POOLS_FAILED)  # not yet advised to the issuer
        queued = await e.reverse(reversal(request(busy), 0), store=False)
    assert forward.status is ReversalStatus.FORWARD
    assert queued.status is ReversalStatus.STORED


async def test_a_local_reversal_reaches_the_stream_after_its_original(tmp_path: Path) -> None:
    """Redis away: approve and reverse locally (window released), then both move to Redis in order."""
    port = free_port()
    card = luhn_pan("4987")
    first = request(card, amount_minor=4_000)
    pol = policy(purchase=WindowLimit(20_000, 5))  # locally 25 %: 50.00, less than 40.00 + 12.00
    async with engine(port, tmp_path / "l.db", pol=pol, redis_settings=IMPATIENT) as e:
        assert (await e.decide(first, Reason.ALL_POOLS_FAILED)).approved
        local = await e.reverse(reversal(first, 0), store=True)
        again = await e.decide(
            request(card, amount_minor=1_200), Reason.ALL_POOLS_FAILED
        )  # local 25 %: 12.50
        redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
        try:
            await e.move_backlog()  # or the engine's recovery task already moved them

            async def moved() -> None:
                assert len(await journal_of(port, card)) == 3

            await assert_eventually(moved, timeout_s=10.0, interval_s=0.1)
            entries = await journal_of(port, card)
            r = client(port)
            members = await r.zrange(
                spend_key(CardTokenizer(TOKEN_KEY).token(card), LimitKind.PURCHASE), 0, -1
            )
            await r.aclose()
        finally:
            await asyncio.to_thread(redis.stop)
    assert local.status is ReversalStatus.APPLIED and again.approved
    assert [f["entry"] for f in entries] == ["decision", "reversal", "decision"]
    assert [m.decode().rsplit(":", 1)[1] for m in members] == ["1200"]  # the reversed 40.00 is gone


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("approve"), st.integers(min_value=1, max_value=3_000)),
            st.tuples(st.just("reverse"), st.integers(min_value=0, max_value=100)),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_counters_equal_the_unreversed_approvals(
    redis_port: int, tmp_path: Path, steps: list[tuple[str, int]]
) -> None:
    """Any interleaving of approvals and (partial) reversals: the window holds exactly what remains."""
    asyncio.run(_counters_scenario(redis_port, tmp_path / f"p-{next(_ids)}.db", steps))


async def _counters_scenario(port: int, db: Path, steps: list[tuple[str, int]]) -> None:
    card = luhn_pan(f"4990{next(_ids):08d}"[:12])
    limit = WindowLimit(6_000, 4)
    remaining: dict[str, int] = {}  # approved request id -> what it stands at now
    originals: dict[str, StandInRequest] = {}
    async with engine(port, db, pol=policy(purchase=limit)) as e:
        for what, value in steps:
            if what == "approve":
                req = request(card, amount_minor=value)
                if (await e.decide(req, Reason.ALL_POOLS_FAILED)).approved:
                    remaining[req.request_id], originals[req.request_id] = value, req
            elif remaining:
                rid = sorted(remaining)[value % len(remaining)]
                final = remaining[rid] * (value % 3) // 3  # 0 (full), a third, two thirds
                if (
                    await e.reverse(reversal(originals[rid], final), store=True)
                ).status is ReversalStatus.APPLIED:
                    remaining[rid] = final
            r = client(port)
            members = await r.zrange(
                spend_key(CardTokenizer(TOKEN_KEY).token(card), LimitKind.PURCHASE), 0, -1
            )
            await r.aclose()
            amounts = [int(m.decode().rsplit(":", 1)[1]) for m in members]
            assert sorted(amounts) == sorted(v for v in remaining.values() if v > 0)
            assert all(a > 0 for a in amounts)
            assert sum(amounts) <= limit.max_amount_minor and len(amounts) <= limit.max_count
