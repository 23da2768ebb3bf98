"""Fraud velocity against a real Redis: merchant and terminal windows stop many cards at one place."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

from helpers import assert_eventually
from test_standin_cluster import cluster_port, cluster_redis  # noqa: F401 (fixtures)
from test_standin_support import IMPATIENT, engine, luhn_pan, policy, request

from chaos.processes import free_port
from standin import Channel, JournalKind, LocalSettings, Reason, ResponseCode, StandIn, StandInDecision
from standin.policy import Velocity, VelocityLimit
from standin.types import AcquirerAdviceKind

_cards = itertools.count()
_places = itertools.count()


def card() -> str:
    return luhn_pan(f"44{next(_cards):08d}")


def place() -> str:
    """A merchant id no other test uses (the windows are fleet-wide, in the session's Redis)."""
    return f"M-velocity-{next(_places)}-{id(_places)}"


TERMINAL_10 = policy(
    velocity=Velocity(
        window=timedelta(minutes=1),
        merchant={c: VelocityLimit(100, 10_000_000) for c in Channel},
        terminal={c: VelocityLimit(10, 10_000_000) for c in Channel},
    )
)


async def at(e: StandIn, merchant: str, terminal: str, n: int, **kw: object) -> list[StandInDecision]:
    return [
        await e.decide(
            request(card(), merchant_id=merchant, terminal_id=terminal, **kw), Reason.ALL_POOLS_FAILED
        )
        for _ in range(n)
    ]


async def test_thirty_cards_at_one_terminal_in_a_minute_are_stopped_by_its_window(
    redis_port: int, tmp_path: Path
) -> None:
    """10 admitted, 20 declined 05 velocity.terminal.count; the merchant's other terminal still approves."""
    merchant = place()
    async with engine(redis_port, tmp_path / "l.db", pol=TERMINAL_10) as e:
        attack = await at(e, merchant, "T-1", 30)
        other = await at(e, merchant, "T-2", 1)
    assert [d.approved for d in attack] == [True] * 10 + [False] * 20
    assert {(d.response_code, d.rule) for d in attack[10:]} == {
        (ResponseCode.DO_NOT_HONOUR, "velocity.terminal.count")
    }
    assert other[0].approved


async def test_the_merchant_window_counts_amount_per_channel(redis_port: int, tmp_path: Path) -> None:
    """E-commerce at a merchant stops at 5,000 over all its terminals; chip, without a window, goes on."""
    pol = policy(velocity=Velocity(merchant={Channel.ECOMMERCE: VelocityLimit(1_000, 5_000)}))
    merchant = place()
    ecom = {"channel": Channel.ECOMMERCE, "cardholder_authenticated": True, "amount_minor": 2_000}
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:
        online = [*(await at(e, merchant, "T-1", 2, **ecom)), *(await at(e, merchant, "T-2", 1, **ecom))]
        chip = await at(e, merchant, "T-3", 5, amount_minor=2_000)
    assert [d.approved for d in online] == [True, True, False]
    assert online[2].rule == "velocity.merchant.amount"
    assert all(d.approved for d in chip)


async def test_a_repeated_request_is_counted_once(redis_port: int, tmp_path: Path) -> None:
    """The same 1,000 request three times counts 1,000 in a 3,000 window: two more cards still get in."""
    pol = policy(velocity=Velocity(terminal={Channel.POS_CHIP: VelocityLimit(100, 3_000)}))
    merchant = place()
    first = request(card(), merchant_id=merchant)
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:
        repeats = [await e.decide(first, Reason.ALL_POOLS_FAILED) for _ in range(3)]
        others = await at(e, merchant, "T-1", 3)
    assert all(d.approved and d.decision_id == repeats[0].decision_id for d in repeats)
    assert [d.approved for d in others] == [True, True, False]


async def test_the_window_slides(redis_port: int, tmp_path: Path) -> None:
    """Once a full terminal's window has passed, the terminal is admitted again."""
    pol = policy(
        velocity=Velocity(window=timedelta(seconds=1), terminal={Channel.POS_CHIP: VelocityLimit(2, 10**9)})
    )
    merchant = place()
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:
        assert [d.approved for d in await at(e, merchant, "T-1", 3)] == [True, True, False]

        async def admitted_again() -> None:
            assert (await at(e, merchant, "T-1", 1))[0].approved

        await assert_eventually(admitted_again, timeout_s=5, interval_s=0.2)


async def test_velocity_keeps_to_the_merchants_slot_on_a_cluster_node(
    tmp_path: Path,
    cluster_port: int,  # noqa: F811
) -> None:
    """On a one-node Cluster the window script runs (CROSSSLOT would send decisions to the local journal)."""
    async with engine(cluster_port, tmp_path / "l.db", pol=TERMINAL_10) as e:
        decisions = await at(e, place(), "T-1", 12)
    assert {d.journal for d in decisions} == {JournalKind.REDIS}
    assert [d.approved for d in decisions] == [True] * 10 + [False] * 2


async def test_an_acquirer_advice_passes_a_full_terminal_window(redis_port: int, tmp_path: Path) -> None:
    """An offline approval already given is recorded approved even where the window stops requests."""
    pol = policy(velocity=Velocity(terminal={Channel.POS_CHIP: VelocityLimit(1, 10**9)}))
    merchant = place()
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:
        first, stopped = await at(e, merchant, "T-1", 2)
        advice = request(card(), merchant_id=merchant, terminal_id="T-1")
        advised = await e.advise(advice, AcquirerAdviceKind.OFFLINE_APPROVED, approval_code="OFF123")
    assert first.approved and stopped.rule == "velocity.terminal.count"
    assert advised.approved and advised.journal is JournalKind.REDIS


async def test_without_redis_each_gateway_keeps_its_share_of_the_windows(tmp_path: Path) -> None:
    """Local mode, limit_fraction 0.5: 5 of the terminal's 10 per gateway, declined by its rule after;
    a repeat is admitted again and counted once; another terminal still approves."""
    merchant = place()
    async with engine(
        free_port(), tmp_path / "l.db", pol=TERMINAL_10, redis_settings=IMPATIENT,
        local=LocalSettings(limit_fraction=0.5),
    ) as e:  # fmt: skip
        first = request(card(), merchant_id=merchant, terminal_id="T-1")
        again = [await e.decide(first, Reason.ALL_POOLS_FAILED) for _ in range(2)]
        attack = await at(e, merchant, "T-1", 8)
        other = await at(e, merchant, "T-2", 1)
    assert {d.journal for d in again + attack + other} == {JournalKind.SQLITE}
    assert [d.approved for d in again + attack] == [True] * 6 + [False] * 4
    assert {(d.response_code, d.rule) for d in attack[4:]} == {
        (ResponseCode.DO_NOT_HONOUR, "velocity.terminal.count")
    }
    assert other[0].approved
