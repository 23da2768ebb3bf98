"""The policy keys of the exposure budgets, velocity windows and verification results: values and errors."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from typing import Any

import pytest

from authgw.config import Section
from standin import PolicyError
from standin.policy import StandInPolicy, Velocity, VelocityLimit
from standin.policy_load import policy_from_section
from standin.types import Channel, Check

FULL = """
[[policy.exposure_budgets]]
period = "1h"
max_amount_minor = 5_000_000
[[policy.exposure_budgets]]
name = "ecommerce_day"
period = "24h"
max_amount_minor = 900_000
shards = 4
channels = ["ECOMMERCE"]
mcc_groups = ["other"]
[policy.velocity]
window_length = "2m"
[policy.velocity.terminal]
max_count = 20
max_amount_minor = 300_000
[policy.velocity.terminal.channel.ECOMMERCE]
max_count = 5
[policy.velocity.merchant.channel.POS_CHIP]
max_count = 100
max_amount_minor = 1_000_000
[policy.risk_points.verification_absent.ECOMMERCE]
cvv = 1
"""


def parse(text: str) -> StandInPolicy:
    table: dict[str, Any] = tomllib.loads(text).get("policy", {})
    return policy_from_section(Section("test.toml", "policy", table, PolicyError))


def test_the_risk_keys_load_as_written() -> None:
    """Budgets (name from the period unless named), velocity with per-channel overrides, absent points."""
    p = parse(FULL)
    hour, day = p.exposure_budgets
    assert (hour.name, hour.period, hour.max_amount_minor, hour.shards) == (
        "1h",
        timedelta(hours=1),
        5_000_000,
        8,
    )
    assert (day.name, day.shards, day.channels, day.mcc_groups) == (
        "ecommerce_day", 4, frozenset({Channel.ECOMMERCE}), frozenset({"other"}),
    )  # fmt: skip
    assert day.applies(Channel.ECOMMERCE, "other") and not day.applies(Channel.POS_CHIP, "other")
    assert p.velocity.window == timedelta(minutes=2)
    assert p.velocity.terminal[Channel.POS_CHIP] == VelocityLimit(20, 300_000)
    assert p.velocity.terminal[Channel.ECOMMERCE] == VelocityLimit(5, 300_000)
    assert dict(p.velocity.merchant) == {Channel.POS_CHIP: VelocityLimit(100, 1_000_000)}
    assert dict(p.verification_absent_points[Channel.ECOMMERCE]) == {Check.CVV: 1}


def test_the_defaults_have_no_budget_no_velocity_and_no_absent_points() -> None:
    """Off unless the bank sets them: most terminal traffic carries no verification result."""
    p = parse("")
    assert (p.exposure_budgets, p.velocity, dict(p.verification_absent_points)) == ((), Velocity(), {})
    assert not p.velocity.enabled


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[policy.exposure_budgets]]\nmax_amount_minor = 1\n', "policy.exposure_budgets[0].period"),
        ('[[policy.exposure_budgets]]\nperiod = "1h"\nmax_amount_minor = 1\nchannels = ["POS"]\n',
         "policy.exposure_budgets[0].channels"),
        ('[[policy.exposure_budgets]]\nperiod = "1h"\nmax_amount_minor = 1\nmcc_groups = ["nope"]\n',
         "policy.exposure_budgets[0].mcc_groups"),
        ('[[policy.exposure_budgets]]\nperiod = "1h"\nmax_amount_minor = 1\nshards = 1\n' * 2,
         "policy.exposure_budgets[1].name"),
        ("[policy.velocity.terminal]\nmax_count = 0\n", "policy.velocity.terminal.max_count"),
        ("[policy.velocity.merchant.channel.POS]\nmax_count = 3\n", "policy.velocity.merchant.channel.POS"),
        ("[policy.risk_points.verification_absent.ECOMMERCE]\ncvc = 1\n",
         "policy.risk_points.verification_absent.ECOMMERCE.cvc"),
    ],
)  # fmt: skip
def test_a_bad_risk_key_is_named_with_its_fix(text: str, key: str) -> None:
    """Each mistake raises PolicyError naming the dotted key."""
    with pytest.raises(PolicyError) as info:
        parse(text)
    assert key in str(info.value)


def test_a_shard_smaller_than_the_largest_transaction_is_refused() -> None:
    """8 shards of a 100,000 budget hold 12,500: a POS_CHIP transaction of up to 100,000 could never fit."""
    with pytest.raises(PolicyError) as info:
        parse('[[policy.exposure_budgets]]\nperiod = "1h"\nmax_amount_minor = 100_000\n')
    assert "policy.exposure_budgets[0].shards" in str(info.value) and "use at most 1 shards" in str(
        info.value
    )
    scoped = parse('[[policy.exposure_budgets]]\nperiod = "1h"\nmax_amount_minor = 40_000\nshards = 8\n'
                   'channels = ["POS_CONTACTLESS"]\n')  # fmt: skip
    assert scoped.exposure_budgets[0].shard_cap() == 5_000  # contactless: at most 5,000 a transaction
