"""The exposure budget against a real Redis: a fleet-wide ceiling, sharded, that lost replies never leak."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import PAN_MC, assert_eventually
from test_standin_cli import authgw, config_file
from test_standin_cluster import cluster_port, cluster_redis  # noqa: F401 (fixtures)
from test_standin_money import QUICK, _stall, debug_redis  # noqa: F401 (a fixture)
from test_standin_reversals import reversal
from test_standin_support import (
    IMPATIENT,
    TOKEN_KEY,
    client,
    engine,
    flush_standin_keys,
    luhn_pan,
    policy,
    request,
)

from chaos.processes import ManagedProcess, free_port, start_redis
from gateway.journal_sampler import JournalSampler
from standin import (
    JournalKind,
    LocalSettings,
    Reason,
    ResponseCode,
    StandIn,
    StandInDecision,
    StandInRequest,
    WindowLimit,
)
from standin.keys import budget_keys, budget_shard_of
from standin.policy import ExposureBudget
from standin.tokens import CardTokenizer
from standin.types import AcquirerAdviceKind, ReversalStatus

BUDGET = ExposureBudget("test", max_amount_minor=10_000, period=timedelta(hours=1), shards=2)
POLICY = policy(exposure_budgets=(BUDGET,))
_cards = itertools.count()


def card() -> str:
    return luhn_pan(f"49{next(_cards):08d}")


async def exposure(e: StandIn) -> int:
    [b] = await e.exposure()
    assert b.name == "test" and b.budget_minor == 10_000
    return b.exposure_minor


async def test_a_spent_budget_declines_with_its_rule_and_exposure_is_the_approved_sum(
    redis_port: int, tmp_path: Path
) -> None:
    """30 cards x 1,000 against a 10,000 budget: 10 approved, 20 declined 91 by exposure_budget.test."""
    async with engine(redis_port, tmp_path / "l.db", pol=POLICY) as e:
        decisions = [await e.decide(request(card()), Reason.ALL_POOLS_FAILED) for _ in range(30)]
        approved = [d for d in decisions if d.approved]
        declined = {(d.response_code, d.rule) for d in decisions if not d.approved}
        assert len(approved) == 10
        assert declined == {(ResponseCode.ISSUER_UNAVAILABLE, "exposure_budget.test")}
        assert await exposure(e) == 1_000 * len(approved)
        sampler = JournalSampler(e)
        await sampler.sample()
        assert sampler.exposure == {"test": (10_000, 10_000)}  # what the metrics export


async def test_a_declined_decision_gives_its_reservation_back(redis_port: int, tmp_path: Path) -> None:
    """Declines by the card's own limit or a replay hold nothing: exposure counts approvals only."""
    pol = policy(exposure_budgets=(BUDGET,), purchase=WindowLimit(max_amount_minor=2_500, max_count=10))
    pan = card()
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:
        first = request(pan, amount_minor=2_000)
        decisions = [
            await e.decide(first, Reason.ALL_POOLS_FAILED),
            await e.decide(request(pan, amount_minor=2_000), Reason.ALL_POOLS_FAILED),  # 61: card limit
            await e.decide(first, Reason.ALL_POOLS_FAILED),  # the same request: its decision again
        ]
        assert [d.response_code.value for d in decisions] == ["00", "61", "00"]
        assert await exposure(e) == 2_000


async def test_budgets_keep_to_their_own_slots_on_a_cluster_node(
    tmp_path: Path,
    cluster_port: int,  # noqa: F811
) -> None:
    """On a one-node Cluster every budget step runs (a CROSSSLOT would send it to the local journal)."""
    async with engine(cluster_port, tmp_path / "l.db", pol=POLICY) as e:
        decisions = [await e.decide(request(card()), Reason.ALL_POOLS_FAILED) for _ in range(14)]
        assert {d.journal for d in decisions} == {JournalKind.REDIS}
        assert sum(d.approved for d in decisions) == 10
        assert await exposure(e) == 10_000


async def decide_with_a_lost_reserve(e: StandIn, port: int, req: StandInRequest) -> StandInDecision:
    """Decide `req` while Redis sleeps (its reserve runs after the engine gave up), then wait for Redis."""
    stall = asyncio.create_task(_stall(port, 0.5))
    await asyncio.sleep(0.05)
    lost = await e.decide(req, Reason.ALL_POOLS_FAILED)
    await stall
    assert lost.journal is JournalKind.SQLITE  # decided locally: Redis counted as down

    async def back() -> None:
        assert (await e.status()).redis_up

    await assert_eventually(back, timeout_s=10)
    return lost


@pytest.fixture
async def sleepy_port(debug_redis: ManagedProcess) -> AsyncIterator[int]:  # noqa: F811
    """The Redis that accepts DEBUG SLEEP, without stand-in keys (budgets are fleet-wide)."""
    r = client(debug_redis.port)
    await flush_standin_keys(r)
    await r.aclose()
    yield debug_redis.port


async def test_a_lost_reserve_reply_is_released_once_redis_answers(sleepy_port: int, tmp_path: Path) -> None:
    """A reserve that ran after its caller gave up (declined locally) is released by the next budget call."""
    port = sleepy_port
    r = client(port)
    lost_pan = card()
    async with engine(port, tmp_path / "l.db", pol=POLICY, redis_settings=QUICK) as e:
        warm = await e.decide(request(PAN_MC), Reason.ALL_POOLS_FAILED)  # a warm connection, scripts loaded
        # 3,000 fits a shard (5,000) but not this gateway's local share (25 %: 2,500)
        lost = await decide_with_a_lost_reserve(e, port, request(lost_pan, amount_minor=3_000))
        assert lost.rule == "exposure_budget.test"
        token = CardTokenizer(TOKEN_KEY).token(lost_pan)
        shard_set = budget_keys("test", budget_shard_of(token, 2))[0]
        assert await r.zscore(shard_set, f"{lost.decision_id}:3000") is not None  # the lost reserve ran
        after = await e.decide(request(card(), amount_minor=500), Reason.ALL_POOLS_FAILED)
        assert after.journal is JournalKind.REDIS and after.approved
        assert warm.approved and await exposure(e) == 1_000 + 500  # the lost reservation is gone
    await r.aclose()


async def test_a_lost_reserve_of_a_local_approval_counts_it(sleepy_port: int, tmp_path: Path) -> None:
    """Approved locally after its reserve reply was lost: the reservation stays, the fleet counts it."""
    port = sleepy_port
    async with engine(port, tmp_path / "l.db", pol=POLICY, redis_settings=QUICK) as e:
        warm = await e.decide(request(PAN_MC), Reason.ALL_POOLS_FAILED)
        lost = await decide_with_a_lost_reserve(e, port, request(card(), amount_minor=2_000))
        after = await e.decide(request(card(), amount_minor=500), Reason.ALL_POOLS_FAILED)
        assert warm.approved and lost.approved and after.approved and after.journal is JournalKind.REDIS
        assert await exposure(e) == 1_000 + 2_000 + 500


async def test_without_redis_each_gateway_approves_its_share_of_the_budget(tmp_path: Path) -> None:
    """Local mode: at most limit_fraction of the budget per gateway, declined by the budget's rule after."""
    async with engine(
        free_port(), tmp_path / "l.db", pol=POLICY, redis_settings=IMPATIENT,
        local=LocalSettings(limit_fraction=0.3),
    ) as e:  # fmt: skip
        decisions = [await e.decide(request(card()), Reason.ALL_POOLS_FAILED) for _ in range(6)]
    assert [d.approved for d in decisions] == [True, True, True, False, False, False]
    assert {d.rule for d in decisions if not d.approved} == {"exposure_budget.test"}


async def test_approvals_older_than_the_period_leave_the_budget(redis_port: int, tmp_path: Path) -> None:
    """A shard holding 4,000 approved long ago (still alive: TTL refreshed) takes 3,000 more of 5,000."""
    one_shard = ExposureBudget("slide", max_amount_minor=5_000, period=timedelta(hours=1), shards=1)
    spend, total = budget_keys("slide", 0)
    r = client(redis_port)
    await r.delete(spend, total)
    await r.zadd(spend, {"old-decision:4000": 1})  # scored at 1 ms after the epoch: long out of the period
    await r.set(total, 4_000)
    async with engine(redis_port, tmp_path / "l.db", pol=policy(exposure_budgets=(one_shard,))) as e:
        decision = await e.decide(request(card(), amount_minor=3_000), Reason.ALL_POOLS_FAILED)
        [b] = await e.exposure()
    assert decision.approved and b.exposure_minor == 3_000
    assert await r.zrange(spend, 0, -1) == [f"{decision.decision_id}:3000".encode()]
    await r.aclose()


async def test_status_command_shows_exposure_against_the_budget(redis_port: int, tmp_path: Path) -> None:
    """`authgw standin status` prints each budget's fleet-wide approved amount and its ceiling."""
    cfg = config_file(tmp_path, redis_port)
    cfg.write_text(
        cfg.read_text()
        + '[[policy.exposure_budgets]]\nname = "cli"\nperiod = "1h"\nmax_amount_minor = 9000\nshards = 1\n'
    )
    pol = policy(exposure_budgets=(ExposureBudget("cli", 9_000, period=timedelta(hours=1), shards=1),))
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:
        approved = [await e.decide(request(card(), amount_minor=4_000), Reason.FORCED) for _ in range(3)]
    code, out, err = await authgw("standin", "status", "--config", str(cfg))
    assert code == 0, err
    assert [d.approved for d in approved].count(True) == 2  # the third passes 9,000
    assert json.loads(out)["exposure"] == [
        {"budget": "cli", "exposure_minor": 8_000, "budget_minor": 9_000, "period_s": 3600.0}
    ]


async def test_local_approvals_count_in_the_budget_once_moved(tmp_path: Path) -> None:
    """Approved while Redis was away, moved when it is back: the fleet's exposure includes them."""
    port = free_port()
    async with engine(port, tmp_path / "l.db", pol=POLICY, redis_settings=IMPATIENT) as away:
        local = [await away.decide(request(card()), Reason.ALL_POOLS_FAILED) for _ in range(3)]
    assert [d.journal for d in local] == [JournalKind.SQLITE] * 3
    assert [d.approved for d in local] == [True, True, False]  # the local share: 25 % of 10,000
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
    try:
        async with engine(port, tmp_path / "l.db", pol=POLICY) as back:
            await back.move_backlog()
            assert (await back.status()).local_backlog == 0
            assert await exposure(back) == 2_000
    finally:
        await asyncio.to_thread(redis.stop)


async def test_an_acquirer_advice_is_counted_but_never_refused(redis_port: int, tmp_path: Path) -> None:
    """Offline approvals already given: counted while the budget has room, approved once it is spent."""
    one_shard = ExposureBudget("advices", max_amount_minor=5_000, period=timedelta(hours=1), shards=1)
    spend, total = budget_keys("advices", 0)
    r = client(redis_port)
    await r.delete(spend, total)
    await r.aclose()
    async with engine(redis_port, tmp_path / "l.db", pol=policy(exposure_budgets=(one_shard,))) as e:
        advised = [
            await e.advise(request(card(), amount_minor=2_000), AcquirerAdviceKind.OFFLINE_APPROVED)
            for _ in range(3)
        ]
        [b] = await e.exposure()
    assert all(d.approved for d in advised)
    assert b.exposure_minor == 4_000  # the third did not fit: approved, not counted


async def test_a_full_shard_spills_to_the_next(redis_port: int, tmp_path: Path) -> None:
    """Ten cards whose tokens all pick shard 0 of 2: five fill it, five more spill to shard 1."""
    tokenizer = CardTokenizer(TOKEN_KEY)
    homed = [pan for pan in (card() for _ in range(200)) if budget_shard_of(tokenizer.token(pan), 2) == 0][
        :10
    ]
    pol = policy(exposure_budgets=(ExposureBudget("spill", 10_000, period=timedelta(hours=1), shards=2),))
    r = client(redis_port)
    await r.delete(*budget_keys("spill", 0), *budget_keys("spill", 1))
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:
        decisions = [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in homed]
    assert len(homed) == 10 and all(d.approved for d in decisions)
    assert [await r.zcard(budget_keys("spill", s)[0]) for s in (0, 1)] == [5, 5]
    await r.aclose()


async def test_a_reversal_gives_its_approval_back_to_the_budget(redis_port: int, tmp_path: Path) -> None:
    """A spent 5,000 budget: a full reversal frees 2,000 (the next 2,000 fits), a partial one down to
    500 frees 1,500, a repeat of it nothing more, and the budget is exactly the amounts still approved."""
    pol = policy(exposure_budgets=(ExposureBudget("undo", 5_000, period=timedelta(hours=1), shards=1),))
    r = client(redis_port)
    await r.delete(*budget_keys("undo", 0))
    await r.aclose()
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:

        async def spent() -> int:
            [b] = await e.exposure()
            return b.exposure_minor

        first, second = (request(card(), amount_minor=2_000) for _ in range(2))
        assert [(await e.decide(q, Reason.ALL_POOLS_FAILED)).approved for q in (first, second)] == [True] * 2
        over = await e.decide(request(card(), amount_minor=2_000), Reason.ALL_POOLS_FAILED)
        assert over.rule == "exposure_budget.undo" and await spent() == 4_000
        assert (await e.reverse(reversal(first, 0), store=True)).status is ReversalStatus.APPLIED
        assert await spent() == 2_000
        again = await e.decide(request(card(), amount_minor=2_000), Reason.ALL_POOLS_FAILED)
        assert again.approved and await spent() == 4_000
        partial = reversal(second, 500)
        assert (await e.reverse(partial, store=True)).status is ReversalStatus.APPLIED
        await e.reverse(partial, store=True)  # the acquirer repeats it
        assert await spent() == 2_500
        fits = await e.decide(request(card(), amount_minor=2_500), Reason.ALL_POOLS_FAILED)
        assert fits.approved and await spent() == 5_000
