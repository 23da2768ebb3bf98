"""The live stand-in policy in one engine: versions swapped whole, recorded per decision, invalid refused."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import PAN_MC, PAN_VISA, assert_eventually
from hypothesis import given, settings
from hypothesis import strategies as st
from test_standin_support import PAN_KEY, client, engine, luhn_pan, policy, request, stream_entries

from authgw.codes import ResponseCode
from authgw.config import Section
from gateway.settlement.sender import to_pb_advice
from gateway.standin_link import to_response
from standin import Reason
from standin.crypto import PanKeyring
from standin.entry import decode_entry
from standin.errors import PolicyError
from standin.policy import WindowLimit
from standin.policy_live import FILE_VERSION, LivePolicy, VersionedPolicy, policy_from_text
from standin.policy_load import policy_from_section
from standin.settlement.advice import Advice

KEY = "/authgw/standin/policy"


def purchase_limit(amount_minor: int, window: str = "24h") -> str:
    """A policy document lowering the purchase window to `amount_minor`."""
    return (
        f'[policy]\nwindow_length = "{window}"\n\n'
        f"[policy.window.purchase]\nmax_amount_minor = {amount_minor}\nmax_count = 100\n"
    )


async def test_a_new_version_applies_to_the_next_decision_and_is_recorded(
    redis_port: int, tmp_path: Path
) -> None:
    """Version 7 lowers the purchase limit: the next decision declines 61; answer, journal, advice say 7."""
    async with engine(redis_port, tmp_path / "j.sqlite3") as e:
        before = await e.decide(request(PAN_VISA, amount_minor=3_000), Reason.ALL_POOLS_FAILED)
        assert (before.approved, before.policy_version) == (True, 0)
        assert e.live_policy.offer(purchase_limit(2_000), 7, KEY)
        after = await e.decide(request(PAN_MC, amount_minor=3_000), Reason.ALL_POOLS_FAILED)
        assert (after.response_code, after.rule) == (
            ResponseCode.EXCEEDS_AMOUNT_LIMIT,
            "limit.amount.purchase",
        )
        assert after.policy_version == 7
        assert to_response(after).policy_version == 7
        r = client(redis_port)
        try:
            entries = await stream_entries(r)
        finally:
            await r.aclose()
    assert [(x["decision_id"], x["policy_version"]) for x in entries] == [
        (before.decision_id, "0"),
        (after.decision_id, "7"),
    ]
    journaled = decode_entry(entries[1], PanKeyring.of(PAN_KEY))
    advice = Advice(journaled.request, journaled.decision, journaled.card_token, "", 0, "1-0")
    assert to_pb_advice(advice).policy_version == 7  # what settlement tells the issuer


async def test_a_repeated_request_keeps_the_version_that_decided_it(redis_port: int, tmp_path: Path) -> None:
    """Decided under version 0, repeated after version 3 is live: the same decision, still version 0."""
    async with engine(redis_port, tmp_path / "j.sqlite3") as e:
        first_request = request(PAN_VISA, amount_minor=3_000)
        first = await e.decide(first_request, Reason.FORCED)
        assert e.live_policy.offer(purchase_limit(2_000), 3, KEY)
        again = await e.decide(first_request, Reason.FORCED)
        assert (again.decision_id, again.approved, again.policy_version) == (first.decision_id, True, 0)
        fresh = await e.decide(request(PAN_MC, amount_minor=100), Reason.FORCED)
        assert fresh.policy_version == 3


async def test_a_card_above_a_lowered_limit_is_declined_until_its_window_falls_under(
    redis_port: int, tmp_path: Path
) -> None:
    """Spent 3,000, limit dropped to 2,000: declined 61, nothing reversed; approved once the window passes."""
    seed = policy(window=timedelta(seconds=2))
    async with engine(redis_port, tmp_path / "j.sqlite3", pol=seed) as e:
        spent = [await e.decide(request(PAN_VISA, amount_minor=1_000), Reason.FORCED) for _ in range(3)]
        assert all(d.approved for d in spent)
        assert e.live_policy.offer(purchase_limit(2_000, window="2s"), 1, KEY)
        small = await e.decide(request(PAN_VISA, amount_minor=100), Reason.FORCED)
        assert (small.approved, small.rule, small.policy_version) == (False, "limit.amount.purchase", 1)
        r = client(redis_port)
        try:
            entries = await stream_entries(r)
        finally:
            await r.aclose()
        assert [x.get("entry", "decision") for x in entries] == ["decision"] * 4  # no reversal of the three
        assert [x["approved"] for x in entries] == ["1", "1", "1", "0"]

        async def approved_again() -> None:
            d = await e.decide(request(PAN_VISA, amount_minor=1_500), Reason.FORCED)
            assert d.approved and d.policy_version == 1

        await assert_eventually(approved_again, timeout_s=10.0, interval_s=0.5)


async def test_an_invalid_version_keeps_the_current_policy_logged_and_counted(
    redis_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A negative limit is refused naming the key and the field; decisions stay on the previous version."""
    async with engine(redis_port, tmp_path / "j.sqlite3") as e:
        assert e.live_policy.offer(purchase_limit(2_000), 1, KEY)
        with caplog.at_level(logging.ERROR, logger="authgw.standin.policy"):
            assert not e.live_policy.offer(purchase_limit(-5), 2, KEY)
        assert f"{KEY}: policy.window.purchase.max_amount_minor" in caplog.text
        assert (e.live_policy.version, e.live_policy.rejected) == (1, 1)
        d = await e.decide(request(PAN_VISA, amount_minor=3_000), Reason.FORCED)
        assert (d.approved, d.policy_version) == (False, 1)


def test_a_window_length_change_is_refused_with_the_fix() -> None:
    """The counters' window is sized at start: another window_length is refused, naming key and fix."""
    holder = LivePolicy(VersionedPolicy(policy(), FILE_VERSION, "standin.toml [policy]"))
    assert not holder.offer(purchase_limit(2_000, window="1h"), 1, KEY)
    assert (holder.version, holder.rejected) == (0, 1)
    assert holder.offer(purchase_limit(2_000, window="24h"), 1, KEY)
    assert holder.current.policy.purchase == WindowLimit(2_000, 100)


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ("[policy\n", "-", "fix the syntax"),
        ("[policy]\n[redis]\nurl = 'x'\n", "redis", "remove it"),
        ("[policy.window.purchase]\nmax_count = 'ten'\n", "policy.window.purchase.max_count", ""),
        ("[policy]\nblocked_mcc_groups = ['casino']\n", "policy.blocked_mcc_groups", "define it"),
    ],
)
def test_a_policy_document_is_validated_like_the_file(text: str, key: str, fix: str) -> None:
    """Bad TOML, a foreign table, a wrong type, an unknown group: PolicyError naming the key and field."""
    with pytest.raises(PolicyError) as raised:
        policy_from_text(text, KEY)
    assert str(raised.value).startswith(f"{KEY}: {key}: ")
    assert fix in str(raised.value)


_LEAF = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.booleans(),
    st.text(max_size=6),
    st.sampled_from(["24h", "0s", "5411", "7800-7802", "9-1", "full", "EUR", "FR", "groceries", "other"]),
    st.lists(st.sampled_from(["groceries", "cash", "casino", "5411", 7]), max_size=3),
)


_PATHS = [
    ("home_country",),
    ("limit_currency",),
    ("window_length",),
    ("currency_rates",),
    ("currency_rates", "USD"),
    ("currency_rates", "usd"),
    ("window",),
    ("window", "purchase"),
    ("window", "purchase", "max_amount_minor"),
    ("window", "cash", "max_count"),
    ("window", "atm"),
    ("txn_max_minor",),
    ("txn_max_minor", "channel"),
    ("txn_max_minor", "channel", "ATM"),
    ("txn_max_minor", "channel", "PIGEON"),
    ("txn_max_minor", "mcc_group"),
    ("txn_max_minor", "mcc_group", "groceries"),
    ("txn_max_minor", "mcc_group", "casino"),
    ("mcc_groups",),
    ("mcc_groups", "casino"),
    ("mcc_groups", "other"),
    ("mcc_groups", "Bad Name"),
    ("blocked_mcc_groups",),
    ("cash_mcc_groups",),
    ("tiers",),
    ("risk_points",),
    ("risk_points", "channel"),
    ("risk_points", "channel", "POS_CHIP"),
    ("risk_points", "channel", "POS_CHIP", "authenticated"),
    ("risk_points", "foreign_merchant"),
    ("risk_points", "mcc_group"),
    ("risk_points", "mcc_group", "groceries"),
]
_TIERS = st.lists(st.fixed_dictionaries({}, optional={"name": _LEAF, "limit_scale": _LEAF}), max_size=3)


def _document(changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    """A [policy] table with `changes` (path, value) applied in order to an empty one."""
    doc: dict[str, Any] = {}
    for path, value in changes:
        table = doc
        for name in path[:-1]:
            if not isinstance(table.get(name), dict):
                table[name] = {}
            table = table[name]
        table[path[-1]] = value
    return doc


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PATHS), st.one_of(_LEAF, _TIERS)), min_size=1, max_size=3))
def test_any_published_document_is_a_policy_or_a_policy_error(
    changes: list[tuple[tuple[str, ...], Any]],
) -> None:
    """Whatever an operator publishes, validation gives a policy or a PolicyError (the watch lives on)."""
    try:
        policy_from_section(Section(KEY, "policy", _document(changes), PolicyError))
    except PolicyError as exc:
        assert str(exc).startswith(f"{KEY}: policy")


def risk_policy(budget_minor: int, terminal_count: int, shards: int = 1) -> str:
    """A policy document with one exposure budget ("live") and a terminal velocity window."""
    return (
        f'{purchase_limit(1_000_000)}\n[[policy.exposure_budgets]]\nname = "live"\nperiod = "1h"\n'
        f"max_amount_minor = {budget_minor}\nshards = {shards}\n\n"
        f'[policy.velocity]\nwindow_length = "1m"\n[policy.velocity.terminal]\n'
        f"max_count = {terminal_count}\nmax_amount_minor = 100000000\n"
    )


async def test_budgets_and_velocity_follow_a_new_version(redis_port: int, tmp_path: Path) -> None:
    """Started with neither; version 4 adds a 3,000 budget and a 2-request terminal window, version 5
    raises the budget to 4,000: each applies to the next decision, and exposure reports the live one."""
    terminal = f"T-live-{tmp_path.name}"
    async with engine(redis_port, tmp_path / "j.sqlite3") as e:

        async def at(pan: str, term: str) -> tuple[str, int]:
            d = await e.decide(request(pan, amount_minor=1_000, terminal_id=term), Reason.ALL_POOLS_FAILED)
            return d.rule, d.policy_version

        pans = [luhn_pan(f"47{i:06d}") for i in range(8)]
        assert [await at(p, terminal) for p in pans[:3]] == [("approved", 0)] * 3
        assert await e.exposure() == []
        assert e.live_policy.offer(risk_policy(3_000, 2), 4, KEY)
        over_window = ("velocity.terminal.count", 4)
        assert [await at(p, terminal) for p in pans[3:6]] == [("approved", 4), ("approved", 4), over_window]
        over_budget = ("exposure_budget.live", 4)
        assert [await at(p, f"{terminal}-{p}") for p in pans[5:7]] == [("approved", 4), over_budget]
        [b] = await e.exposure()
        assert (b.name, b.exposure_minor, b.budget_minor) == ("live", 3_000, 3_000)
        assert e.live_policy.offer(risk_policy(4_000, 2), 5, KEY)
        assert await at(pans[7], f"{terminal}-x") == ("approved", 5)
        [b] = await e.exposure()
        assert (b.exposure_minor, b.budget_minor) == (4_000, 4_000)


def test_a_running_budgets_shard_count_cannot_change(caplog: pytest.LogCaptureFixture) -> None:
    """Its reservations live on that many keys: refused, naming the field and the fix. The budget is
    large enough for 4 shards, so only the running count can refuse it."""
    live = LivePolicy(VersionedPolicy(policy(), FILE_VERSION, "file"))
    assert live.offer(risk_policy(1_000_000, 2, shards=1), 1, KEY)
    with caplog.at_level(logging.ERROR, logger="authgw.standin.policy"):
        assert not live.offer(risk_policy(1_000_000, 2, shards=4), 2, KEY)
    field = "policy.exposure_budgets[0].shards"
    assert f"{KEY}: {field}: 4 differs from the running budget 'live'" in caplog.text
    assert "keep shards = 1, or give the budget another name" in caplog.text
    assert live.version == 1 and live.rejected == 1
    assert live.offer(risk_policy(1_000_000, 2, shards=4).replace('"live"', '"renamed"'), 3, KEY)
