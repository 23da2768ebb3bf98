"""Balance-aware stand-in against a real Redis: the issuer's last reported balance caps approvals."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import assert_eventually
from test_standin_cluster import cluster_port, cluster_redis  # noqa: F401 (fixtures)
from test_standin_support import ENV, TOKEN_KEY, client, engine, luhn_pan, policy, request

from standin import ConfigError, Reason, ResponseCode, StandIn, StandInDecision, load_config
from standin.balances import BALANCE_RULE, BalanceSettings
from standin.keys import balance_key
from standin.policy import ExposureBudget
from standin.tokens import CardTokenizer
from standin.types import Channel

_cards = itertools.count()


def card() -> str:
    return luhn_pan(f"46{next(_cards):08d}")


async def pay(e: StandIn, pan: str, amount_minor: int, **kw: object) -> StandInDecision:
    return await e.decide(request(pan, amount_minor=amount_minor, **kw), Reason.ALL_POOLS_FAILED)


async def test_reported_30_declines_50_with_51_and_approves_20(redis_port: int, tmp_path: Path) -> None:
    """Issuer said 30.00 left: 50.00 declined 51 balance.available, 20.00 approved, then 15.00 declined."""
    pan = card()
    async with engine(redis_port, tmp_path / "l.db") as e:
        await e.remember_balance(pan, 3_000, "EUR")
        over = await pay(e, pan, 5_000)
        within = await pay(e, pan, 2_000)
        past_spent = await pay(e, pan, 1_500)  # 30.00 - 20.00 approved since = 10.00 left
        rest = await pay(e, pan, 1_000)
    assert not over.approved
    assert (over.response_code, over.rule) == (ResponseCode.INSUFFICIENT_FUNDS, BALANCE_RULE)
    assert within.approved
    assert (past_spent.response_code, past_spent.rule) == (ResponseCode.INSUFFICIENT_FUNDS, BALANCE_RULE)
    assert rest.approved


async def test_a_card_never_seen_keeps_the_policy_limits(redis_port: int, tmp_path: Path) -> None:
    """No balance reported: 50.00 is approved as the policy's window allows."""
    async with engine(redis_port, tmp_path / "l.db") as e:
        decision = await pay(e, card(), 5_000)
    assert decision.approved


async def test_an_expired_balance_falls_back_to_the_policy_limits(redis_port: int, tmp_path: Path) -> None:
    """A balance older than its ttl no longer caps: 50.00 approved after 30.00 was reported and expired."""
    pan = card()
    key = balance_key(CardTokenizer(TOKEN_KEY).token(pan))
    r = client(redis_port)
    async with engine(redis_port, tmp_path / "l.db", balance=BalanceSettings(ttl=timedelta(seconds=1))) as e:
        await e.remember_balance(pan, 3_000, "EUR")
        assert await r.exists(key) == 1

        async def expired() -> None:
            assert await r.exists(key) == 0

        await assert_eventually(expired, timeout_s=10, interval_s=0.1)
        decision = await pay(e, pan, 5_000)
    await r.aclose()
    assert decision.approved


async def test_a_new_balance_replaces_the_spending_since_the_old_one(redis_port: int, tmp_path: Path) -> None:
    """After 20.00 of 30.00 spent, the issuer reports 50.00 (newer than those approvals): 50.00 fits."""
    pan = card()
    async with engine(redis_port, tmp_path / "l.db") as e:
        await e.remember_balance(pan, 3_000, "EUR")
        assert (await pay(e, pan, 2_000)).approved
        await e.remember_balance(pan, 5_000, "EUR")
        decision = await pay(e, pan, 5_000)
    assert decision.approved


async def test_a_balance_in_another_currency_does_not_cap(redis_port: int, tmp_path: Path) -> None:
    """A balance in EUR says nothing about a USD amount: the policy's limits decide it."""
    pan = card()
    with_usd = policy(currency_rates={"EUR": 1.0, "USD": 1.0})
    async with engine(redis_port, tmp_path / "l.db", pol=with_usd) as e:
        await e.remember_balance(pan, 3_000, "EUR")
        decision = await pay(e, pan, 5_000, currency="USD")
    assert decision.approved


async def test_the_balance_is_in_the_cards_slot_on_a_cluster(cluster_port: int, tmp_path: Path) -> None:  # noqa: F811
    """On Redis Cluster the balance key shares the card's hash tag: DECIDE reads it (51), no CROSSSLOT."""
    pan = card()
    async with engine(cluster_port, tmp_path / "l.db") as e:
        await e.remember_balance(pan, 3_000, "EUR")
        decision = await pay(e, pan, 5_000)
    assert (decision.response_code, decision.rule) == (ResponseCode.INSUFFICIENT_FUNDS, BALANCE_RULE)


async def test_a_known_balance_scale_lifts_the_generic_limits_and_the_balance_caps(
    redis_port: int, tmp_path: Path
) -> None:
    """known_balance_scale 3: a tap (per-transaction maximum 50.00) of 120.00 is approved on a card
    whose issuer reported 300.00, declined 61 on a card never seen and 51 on one that reported
    100.00; 160.00 is above even the lifted maximum (150.00)."""
    seen, unseen, low = card(), card(), card()
    tap = {"channel": Channel.POS_CONTACTLESS}  # with PIN: the full tier
    async with engine(redis_port, tmp_path / "l.db", pol=policy(known_balance_scale=3.0)) as e:
        await e.remember_balance(seen, 30_000, "EUR")
        await e.remember_balance(low, 10_000, "EUR")
        lifted = await pay(e, seen, 12_000, **tap)
        generic = await pay(e, unseen, 12_000, **tap)
        capped = await pay(e, low, 12_000, **tap)
        above = await pay(e, seen, 16_000, **tap)
    assert lifted.approved, lifted
    assert (generic.response_code, generic.rule) == (ResponseCode.EXCEEDS_AMOUNT_LIMIT, "txn_max.channel")
    assert (capped.response_code, capped.rule) == (ResponseCode.INSUFFICIENT_FUNDS, BALANCE_RULE)
    assert (above.response_code, above.rule) == (ResponseCode.EXCEEDS_AMOUNT_LIMIT, "txn_max.channel")


async def test_a_lifted_approval_still_draws_on_the_exposure_budget(redis_port: int, tmp_path: Path) -> None:
    """The fleet-wide steps run for a request the generic limits decline but a known balance may
    approve: 120.00 on a known card against a 100.00 budget is declined by the budget."""
    pan = card()
    budget = ExposureBudget("lifted", max_amount_minor=10_000, period=timedelta(hours=1), shards=1)
    pol = policy(known_balance_scale=3.0, exposure_budgets=(budget,))
    async with engine(redis_port, tmp_path / "l.db", pol=pol) as e:
        await e.remember_balance(pan, 30_000, "EUR")
        decision = await pay(e, pan, 12_000, channel=Channel.POS_CONTACTLESS)
    assert decision.response_code == ResponseCode.ISSUER_UNAVAILABLE
    assert decision.rule == "exposure_budget.lifted"


def _config(tmp_path: Path, balance: str) -> Path:
    path = tmp_path / "standin.toml"
    path.write_text(f'[redis]\nurl = "redis://127.0.0.1:1/0"\ninsecure = true\n{balance}')
    return path


def test_the_balance_section_loads(tmp_path: Path) -> None:
    """`[balance]` ttl and queue_size reach the config; absent, the defaults (24h, 10,000)."""
    given = load_config(_config(tmp_path, '[balance]\nttl = "90s"\nqueue_size = 5\n'), ENV)
    assert given.balance == BalanceSettings(ttl=timedelta(seconds=90), queue_size=5)
    assert load_config(_config(tmp_path, ""), ENV).balance == BalanceSettings()


@pytest.mark.parametrize(
    ("section", "key"),
    [('ttl = "0s"', "balance.ttl"), ("queue_size = 0", "balance.queue_size"), ("size = 3", "balance.size")],
)
def test_a_bad_balance_setting_names_its_key(tmp_path: Path, section: str, key: str) -> None:
    """A ttl under a second, an empty queue or an unknown key: a ConfigError naming the key."""
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, f"[balance]\n{section}\n"), ENV)
    assert caught.value.key == key, caught.value
