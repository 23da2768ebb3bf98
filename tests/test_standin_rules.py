"""Each stand-in rule, response code and risk tier, decided by a real engine against the session Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import PAN_MC, PAN_VISA
from test_standin_support import (
    TOKEN_KEY,
    FakeClock,
    client,
    engine,
    luhn_pan,
    policy,
    request,
)

from standin import Channel, JournalKind, Reason, ResponseCode, StandIn, WindowLimit
from standin.keys import card_status_key, spend_key
from standin.tokens import CardTokenizer
from standin.types import LimitKind

RC = ResponseCode


@pytest.fixture
async def standin(redis_port: int, tmp_path: Path) -> AsyncIterator[StandIn]:
    """An engine with the default test policy (roomy windows)."""
    async with engine(redis_port, tmp_path / "local.sqlite3") as e:
        yield e


@pytest.fixture
async def tight(redis_port: int, tmp_path: Path) -> AsyncIterator[tuple[StandIn, FakeClock]]:
    """An engine with small windows (purchase 10 000 / 3, cash 5 000 / 2) and a hand-moved clock."""
    clock = FakeClock()
    pol = policy(purchase=WindowLimit(10_000, 3), cash=WindowLimit(5_000, 2))
    async with engine(redis_port, tmp_path / "local.sqlite3", pol=pol, clock=clock) as e:
        yield e, clock


async def set_status(port: int, pan: str, status: str) -> None:
    r = client(port)
    await r.set(card_status_key(CardTokenizer(TOKEN_KEY).token(pan)), status)
    await r.aclose()


async def decide(e: StandIn, **overrides: object) -> tuple[bool, ResponseCode, str]:
    pan = str(overrides.pop("pan", PAN_VISA))
    d = await e.decide(request(pan, **overrides), Reason.ALL_POOLS_FAILED)
    return d.approved, d.response_code, d.rule


async def test_low_risk_purchase_is_approved(standin: StandIn) -> None:
    """Chip and PIN at home within every limit: approved, 00, 6-character code, rule 'approved'."""
    d = await standin.decide(request(PAN_VISA), Reason.ALL_POOLS_FAILED)
    assert (d.approved, d.response_code, d.rule) == (True, RC.APPROVED, "approved")
    assert len(d.approval_code) == 6 and d.approval_code.isalnum()
    assert (d.risk_tier, d.reason, d.gateway_instance, d.journal) == (
        "full", Reason.ALL_POOLS_FAILED, "gw-test", JournalKind.REDIS,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("blocked", RC.DO_NOT_HONOUR),
        ("lost", RC.LOST_CARD),
        ("stolen", RC.STOLEN_CARD),
    ],
)
async def test_card_status_declines(
    standin: StandIn, redis_port: int, status: str, code: ResponseCode
) -> None:
    """A card the issuer marked blocked / lost / stolen is declined 05 / 41 / 43 by card_status.<status>."""
    await set_status(redis_port, PAN_VISA, status)
    d = await standin.decide(request(PAN_VISA), Reason.ALL_POOLS_FAILED)
    assert (d.approved, d.response_code, d.rule, d.approval_code) == (
        False,
        code,
        f"card_status.{status}",
        "",
    )


async def test_card_status_goes_before_static_rules(standin: StandIn, redis_port: int) -> None:
    """A lost card at a gambling merchant is answered 41 (pick up), not 57."""
    await set_status(redis_port, PAN_VISA, "lost")
    assert await decide(standin, mcc="7995") == (False, RC.LOST_CARD, "card_status.lost")


async def test_status_of_one_card_does_not_touch_another(standin: StandIn, redis_port: int) -> None:
    """Only the listed card is declined; another card is approved."""
    await set_status(redis_port, PAN_VISA, "stolen")
    assert (await decide(standin, pan=PAN_MC))[0] is True


async def test_blocked_mcc_group_is_declined_57(standin: StandIn) -> None:
    """Gambling (7995) is never approved in stand-in: 57 by mcc_group.blocked."""
    assert await decide(standin, mcc="7995") == (
        False,
        RC.NOT_PERMITTED_TO_CARDHOLDER,
        "mcc_group.blocked",
    )


async def test_invalid_pan_is_declined_14(standin: StandIn) -> None:
    """A PAN failing the Luhn check is declined 14 by card.invalid_pan."""
    assert await decide(standin, pan="4111111111111112") == (
        False, RC.INVALID_CARD_NUMBER, "card.invalid_pan",
    )  # fmt: skip


async def test_unsupported_currency_is_declined_57(standin: StandIn) -> None:
    """A currency with no configured rate cannot be checked against limits: 57 by currency.unsupported."""
    assert await decide(standin, currency="JPY") == (
        False, RC.NOT_PERMITTED_TO_CARDHOLDER, "currency.unsupported",
    )  # fmt: skip


async def test_channel_transaction_maximum_is_declined_61(standin: StandIn) -> None:
    """Contactless above its 50.00 per-transaction maximum: 61 by txn_max.channel."""
    assert await decide(standin, channel=Channel.POS_CONTACTLESS, amount_minor=5_001, mcc="5812") == (
        False, RC.EXCEEDS_AMOUNT_LIMIT, "txn_max.channel",
    )  # fmt: skip


async def test_mcc_group_transaction_maximum_is_declined_61(standin: StandIn) -> None:
    """Fuel above its 150.00 per-transaction maximum (chip allows more): 61 by txn_max.mcc_group."""
    assert await decide(standin, mcc="5541", amount_minor=15_001) == (
        False, RC.EXCEEDS_AMOUNT_LIMIT, "txn_max.mcc_group",
    )  # fmt: skip


async def test_purchase_amount_limit_is_declined_61(tight: tuple[StandIn, FakeClock]) -> None:
    """A purchase that would take the card past its window amount is declined 61 by limit.amount.purchase."""
    e, _ = tight
    assert (await decide(e, amount_minor=6_000))[0] is True
    assert await decide(e, amount_minor=4_001) == (
        False,
        RC.EXCEEDS_AMOUNT_LIMIT,
        "limit.amount.purchase",
    )
    assert (await decide(e, amount_minor=4_000))[0] is True


async def test_purchase_count_limit_is_declined_65(tight: tuple[StandIn, FakeClock]) -> None:
    """The 4th purchase in the window (limit 3) is declined 65 by limit.count.purchase."""
    e, _ = tight
    for _ in range(3):
        assert (await decide(e, amount_minor=100))[0] is True
    assert await decide(e, amount_minor=100) == (
        False,
        RC.EXCEEDS_FREQUENCY_LIMIT,
        "limit.count.purchase",
    )


async def test_cash_amount_limit_is_declined_61(tight: tuple[StandIn, FakeClock]) -> None:
    """ATM withdrawals draw on the cash limit: past it, 61 by limit.amount.cash."""
    e, _ = tight
    atm = {"channel": Channel.ATM, "mcc": "6011"}
    assert (await decide(e, amount_minor=4_000, **atm))[0] is True
    assert await decide(e, amount_minor=1_001, **atm) == (
        False,
        RC.EXCEEDS_AMOUNT_LIMIT,
        "limit.amount.cash",
    )


async def test_cash_count_limit_is_declined_65(tight: tuple[StandIn, FakeClock]) -> None:
    """The 3rd withdrawal in the window (limit 2) is declined 65 by limit.count.cash."""
    e, _ = tight
    atm = {"channel": Channel.ATM, "mcc": "6011", "amount_minor": 100}
    for _ in range(2):
        assert (await decide(e, **atm))[0] is True
    assert await decide(e, **atm) == (False, RC.EXCEEDS_FREQUENCY_LIMIT, "limit.count.cash")


async def test_cash_and_purchases_are_counted_separately(tight: tuple[StandIn, FakeClock]) -> None:
    """Exhausting the purchase count leaves cash withdrawals available."""
    e, _ = tight
    for _ in range(3):
        await decide(e, amount_minor=100)
    assert (await decide(e, channel=Channel.ATM, mcc="6011", amount_minor=100))[0] is True


async def test_window_slides(tight: tuple[StandIn, FakeClock], redis_port: int) -> None:
    """Approvals older than the 24 h window no longer count (aged by moving their times back a window)."""
    e, _ = tight
    for _ in range(3):
        await decide(e, amount_minor=100)
    r = client(redis_port)
    key = spend_key(CardTokenizer(TOKEN_KEY).token(PAN_VISA), LimitKind.PURCHASE)
    for member, score in await r.zrange(key, 0, -1, withscores=True):
        await r.zadd(key, {member: score - timedelta(hours=24, seconds=1) / timedelta(milliseconds=1)})
    await r.aclose()
    assert (await decide(e, amount_minor=100))[0] is True


async def test_one_clock_for_the_fleet(redis_port: int, tmp_path: Path) -> None:
    """A gateway whose clock is a day slow cannot write approvals that the others expire early."""
    pol = policy(purchase=WindowLimit(10_000, 3), cash=WindowLimit(5_000, 2))
    slow = FakeClock(start=time.time() - 25 * 3600)
    async with engine(redis_port, tmp_path / "slow.sqlite3", pol=pol, clock=slow) as behind:
        for _ in range(3):
            assert (await decide(behind, amount_minor=100))[0] is True
    async with engine(redis_port, tmp_path / "on-time.sqlite3", pol=pol) as on_time:
        assert await decide(on_time, amount_minor=100) == (
            False,
            RC.EXCEEDS_FREQUENCY_LIMIT,
            "limit.count.purchase",
        )


async def test_declines_are_not_counted(tight: tuple[StandIn, FakeClock], redis_port: int) -> None:
    """Only approvals enter the card's window: declines leave the counter as it was."""
    e, _ = tight
    await decide(e, amount_minor=9_000)
    await decide(e, amount_minor=9_000)
    await decide(e, mcc="7995")
    r = client(redis_port)
    count = await r.zcard(spend_key(CardTokenizer(TOKEN_KEY).token(PAN_VISA), LimitKind.PURCHASE))
    await r.aclose()
    assert count == 1


async def test_same_request_is_decided_once(tight: tuple[StandIn, FakeClock]) -> None:
    """Deciding one request id twice returns the same decision and counts it once."""
    e, _ = tight
    req = request(PAN_VISA, amount_minor=100)
    first = await e.decide(req, Reason.ALL_POOLS_FAILED)
    again = await e.decide(req, Reason.DECLINE_STORM)
    assert again == first
    for _ in range(2):  # two more fit under the count limit of 3, so the repeat was not counted
        assert (await decide(e, amount_minor=100))[0] is True


# -- risk tiers --------------------------------------------------------------------------------------


async def test_foreign_merchant_reduces_the_tier(standin: StandIn) -> None:
    """Chip and PIN abroad is tier 'reduced': the chip maximum (1000.00) is halved."""
    d = await standin.decide(
        request(PAN_VISA, merchant_country="DE", mcc="5411", amount_minor=30_000), Reason.ALL_POOLS_FAILED
    )
    assert (d.risk_tier, d.approved) == ("reduced", False)
    assert d.rule == "txn_max.mcc_group"  # 300.00 > groceries 300.00 x 0.5


async def test_magstripe_is_tier_minimal(standin: StandIn) -> None:
    """Magstripe with PIN at home is tier 'minimal' (20 % of limits) and still approved when small."""
    d = await standin.decide(
        request(PAN_VISA, channel=Channel.POS_MAGSTRIPE, amount_minor=2_000), Reason.ALL_POOLS_FAILED
    )
    assert (d.risk_tier, d.approved) == ("minimal", True)


async def test_magstripe_limits_are_scaled(standin: StandIn) -> None:
    """Magstripe's 200.00 maximum scaled by 0.2: 40.01 is declined 61."""
    d = await standin.decide(
        request(PAN_VISA, channel=Channel.POS_MAGSTRIPE, amount_minor=4_001), Reason.ALL_POOLS_FAILED
    )
    assert (d.risk_tier, d.response_code, d.rule) == (
        "minimal",
        RC.EXCEEDS_AMOUNT_LIMIT,
        "txn_max.channel",
    )


async def test_authenticated_ecommerce_is_reduced(standin: StandIn) -> None:
    """E-commerce with 3-D Secure is tier 'reduced' and approved within it."""
    d = await standin.decide(
        request(PAN_VISA, channel=Channel.ECOMMERCE, pin_verified=False, cardholder_authenticated=True),
        Reason.ALL_POOLS_FAILED,
    )
    assert (d.risk_tier, d.approved) == ("reduced", True)


async def test_unauthenticated_ecommerce_is_never_approved(standin: StandIn) -> None:
    """E-commerce without 3-D Secure falls in tier 'none' (zero limits): 57 by risk_tier.no_stand_in."""
    d = await standin.decide(
        request(PAN_VISA, channel=Channel.ECOMMERCE, pin_verified=False, amount_minor=100),
        Reason.ALL_POOLS_FAILED,
    )
    assert (d.risk_tier, d.response_code, d.rule) == (
        "none", RC.NOT_PERMITTED_TO_CARDHOLDER, "risk_tier.no_stand_in",
    )  # fmt: skip


async def test_atm_without_pin_is_never_approved(standin: StandIn) -> None:
    """Cash without PIN is tier 'none': declined 57."""
    assert await decide(standin, channel=Channel.ATM, mcc="6011", pin_verified=False) == (
        False, RC.NOT_PERMITTED_TO_CARDHOLDER, "risk_tier.no_stand_in",
    )  # fmt: skip


async def test_tier_scales_the_cumulative_limit(tight: tuple[StandIn, FakeClock]) -> None:
    """A reduced-tier purchase may only bring the card to half its window amount (5 000 of 10 000)."""
    e, _ = tight
    assert (await decide(e, amount_minor=4_000))[0] is True
    abroad = await decide(e, amount_minor=1_001, merchant_country="DE")
    assert abroad == (False, RC.EXCEEDS_AMOUNT_LIMIT, "limit.amount.purchase")
    assert (await decide(e, amount_minor=1_001))[0] is True  # the same amount at home fits the full limit


async def test_distinct_cards_have_distinct_counters(tight: tuple[StandIn, FakeClock]) -> None:
    """One card's approvals do not consume another card's limit."""
    e, _ = tight
    for _ in range(3):
        await decide(e, amount_minor=100)
    assert (await decide(e, pan=luhn_pan("52000000"), amount_minor=100))[0] is True
