"""Property tests of the limits: whatever the traffic, approvals never pass a card's limits."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_standin_support import IMPATIENT, TOKEN_KEY, client, engine, luhn_pan, policy, request

from chaos.processes import ManagedProcess, free_port
from standin import Channel, LocalSettings, Reason, StandIn, StandInPolicy, WindowLimit
from standin.keys import spend_key
from standin.rules import assess
from standin.tokens import CardTokenizer
from standin.types import LimitKind

POLICY = policy(purchase=WindowLimit(9_000, 6), cash=WindowLimit(4_000, 3))
FRACTION = 0.25
_cards = itertools.count()

transactions = st.lists(
    st.fixed_dictionaries(
        {
            "amount_minor": st.integers(min_value=1, max_value=4_000),
            "channel": st.sampled_from([Channel.POS_CHIP, Channel.POS_CHIP, Channel.ATM, *Channel]),
            "mcc": st.sampled_from(["5411", "5541", "5812", "6011", "5732", "7995"]),
            "merchant_country": st.sampled_from(["FR", "FR", "DE"]),
            "pin_verified": st.booleans() | st.just(True),
            "cardholder_authenticated": st.booleans(),
        }
    ),
    min_size=1,
    max_size=40,
)


@pytest.fixture(scope="module")
async def fleet_engine(
    redis_server: ManagedProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[StandIn, int]]:
    """One engine on the session Redis for every example (each example uses a fresh card), and its port."""
    async with engine(redis_server.port, tmp_path_factory.mktemp("limits") / "l.db", pol=POLICY) as e:
        yield e, redis_server.port


@pytest.fixture(scope="module")
async def local_engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[StandIn]:
    """One engine whose Redis never answers: every decision is local."""
    async with engine(
        free_port(),
        tmp_path_factory.mktemp("local") / "l.db",
        pol=POLICY,
        redis_settings=IMPATIENT,
        local=LocalSettings(limit_fraction=FRACTION),
    ) as e:
        yield e


async def decide_all(e: StandIn, pan: str, txns: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
    """Decide the transactions of one card, all concurrently."""
    reqs = [request(pan, **t) for t in txns]
    decisions = await asyncio.gather(*(e.decide(r, Reason.ALL_POOLS_FAILED) for r in reqs))
    return [(t, d.approved) for t, d in zip(txns, decisions, strict=True)]


def approved_by_kind(
    pol: StandInPolicy, pan: str, results: list[tuple[dict[str, Any], bool]]
) -> dict[LimitKind, list[int]]:
    out: dict[LimitKind, list[int]] = {LimitKind.PURCHASE: [], LimitKind.CASH: []}
    for t, approved in results:
        if approved:
            out[assess(pol, request(pan, **t)).kind].append(t["amount_minor"])
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txns=transactions)
async def test_fleet_approvals_never_pass_the_limits(
    fleet_engine: tuple[StandIn, int], txns: list[dict[str, Any]]
) -> None:
    """Approved amount and count per kind stay within the card's limits and equal Redis' counters."""
    e, port = fleet_engine
    pan = luhn_pan(f"46{next(_cards):08d}")
    results = await decide_all(e, pan, txns)
    token = CardTokenizer(TOKEN_KEY).token(pan)
    r = client(port)
    try:
        for kind, amounts in approved_by_kind(POLICY, pan, results).items():
            limit = POLICY.limit(kind)
            assert sum(amounts) <= limit.max_amount_minor and len(amounts) <= limit.max_count
            counted = [
                int(m.decode().rsplit(":", 1)[1]) for m in await r.zrange(spend_key(token, kind), 0, -1)
            ]
            assert sorted(counted) == sorted(amounts)
    finally:
        await r.aclose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txns=transactions)
async def test_local_approvals_never_pass_the_local_fraction(
    local_engine: StandIn, txns: list[dict[str, Any]]
) -> None:
    """Without Redis, one gateway approves at most limit_fraction of each limit for a card."""
    pan = luhn_pan(f"47{next(_cards):08d}")
    results = await decide_all(local_engine, pan, txns)
    for kind, amounts in approved_by_kind(POLICY, pan, results).items():
        limit = POLICY.limit(kind).scaled(FRACTION)
        assert sum(amounts) <= limit.max_amount_minor and len(amounts) <= limit.max_count


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txns=transactions)
async def test_every_approval_fits_its_own_tier(
    fleet_engine: tuple[StandIn, int], txns: list[dict[str, Any]]
) -> None:
    """An approved amount never exceeds its channel or MCC-group maximum scaled by its risk tier."""
    pan = luhn_pan(f"48{next(_cards):08d}")
    for t, approved in await decide_all(fleet_engine[0], pan, txns):
        if approved:
            a = assess(POLICY, request(pan, **t))
            assert a.tier.limit_scale > 0
            assert t["amount_minor"] <= POLICY.txn_max_minor_by_channel[t["channel"]] * a.tier.limit_scale
            group_max = POLICY.txn_max_minor_by_mcc_group.get(a.mcc_group)
            assert group_max is None or t["amount_minor"] <= group_max * a.tier.limit_scale
