"""The `[policy]` keys of the fleet-wide risk steps and the verification results (see policy_load.py).

[[policy.exposure_budgets]]           fleet-wide ceilings (exposure.py); none by default
name = "1h"                           optional: rule exposure_budget.<name>, metric window=<name>
period = "1h"                         sliding period (1s .. 31d)
max_amount_minor = 50_000_000         limit-currency minor units
shards = 8                            optional, 1 .. 256
mcc_groups = ["groceries"]            optional: only these groups draw on it
channels = ["ECOMMERCE"]              optional: only these channels

[policy.velocity]                     merchant and terminal windows (velocity.py); none by default
window_length = "1m"
[policy.velocity.terminal]            every channel's default ...
max_count = 20
max_amount_minor = 500_000
[policy.velocity.terminal.channel.ECOMMERCE]   ... and a channel's own (absent keys: the default)
max_count = 5
(the same under [policy.velocity.merchant])

[policy.risk_points.verification_absent.ECOMMERCE]   points per check with no result
cvv = 1                                              (cvv, cryptogram, pin; 0 by default)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType

from authgw.config import Section
from standin.policy import ExposureBudget, Velocity, VelocityLimit
from standin.types import Channel, Check

__all__ = ["exposure_budgets", "velocity", "verification_absent_points"]

_NAME = r"[a-z0-9][a-z0-9_]{0,31}"
_CHANNELS = ", ".join(c.value for c in Channel)
_MAX_AMOUNT_MINOR = 10**15
_CHECKS = [c.value for c in Check]


def _channels(s: Section, name: str) -> frozenset[Channel]:
    values = s.strings(name, ())
    for value in values:
        if value not in Channel.__members__:
            s.fail(name, f"unknown channel {value!r}", f"use some of {_CHANNELS}")
    return frozenset(Channel(v) for v in values)


def exposure_budgets(
    s: Section, known_groups: frozenset[str], txn_max: Mapping[Channel, int]
) -> tuple[ExposureBudget, ...]:
    """The `[[policy.exposure_budgets]]` array (`txn_max`: the per-transaction maxima by channel)."""
    budgets: list[ExposureBudget] = []
    for b in s.tables("exposure_budgets"):
        b.check_known(["name", "period", "max_amount_minor", "shards", "mcc_groups", "channels"])
        if not b.has("period") or not b.has("max_amount_minor"):
            b.fail(
                "period", "a budget needs period and max_amount_minor", 'write period = "1h" and an amount'
            )
        period = b.duration(
            "period", timedelta(hours=1), minimum=timedelta(seconds=1), maximum=timedelta(days=31)
        )
        # the period as written ("1h") names the budget unless it is named
        name = b.string(
            "name", str(b.raw["period"]), pattern=_NAME, fix="use lower_snake_case, at most 32 characters"
        )
        if any(other.name == name for other in budgets):
            b.fail("name", f"budget {name!r} is defined twice", "give each budget a distinct name")
        groups = b.strings("mcc_groups", ())
        for group in groups:
            if group not in known_groups:
                b.fail("mcc_groups", f"unknown MCC group {group!r}", f"use some of {sorted(known_groups)}")
        budget = ExposureBudget(
            name=name,
            max_amount_minor=b.integer("max_amount_minor", 0, maximum=_MAX_AMOUNT_MINOR),
            period=period,
            shards=b.integer("shards", ExposureBudget.shards, minimum=1, maximum=256),
            mcc_groups=frozenset(groups),
            channels=_channels(b, "channels"),
        )
        _check_shard_fits(b, budget, txn_max)
        budgets.append(budget)
    return tuple(budgets)


def _check_shard_fits(b: Section, budget: ExposureBudget, txn_max: Mapping[Channel, int]) -> None:
    """A shard smaller than the largest transaction could never approve it: say so at load (one shard
    is the whole budget: a budget below a transaction simply declines it)."""
    largest = max(v for c, v in txn_max.items() if not budget.channels or c in budget.channels)
    if budget.shards > 1 and budget.shard_cap() < largest:
        b.fail(
            "shards",
            f"a shard holds {budget.shard_cap()} (max_amount_minor / shards), less than the largest"
            f" transaction the policy allows on its channels ({largest})",
            f"use at most {max(1, budget.max_amount_minor // largest)} shards or a larger budget",
        )


def velocity(s: Section) -> Velocity:
    """The `[policy.velocity]` table."""
    s.check_known(["window_length", "merchant", "terminal"])
    window = s.duration(
        "window_length", Velocity.window, minimum=timedelta(seconds=1), maximum=timedelta(days=1)
    )
    return Velocity(window, _velocity_limits(s.table("merchant")), _velocity_limits(s.table("terminal")))


def _velocity_limits(s: Section) -> Mapping[Channel, VelocityLimit]:
    s.check_known(["max_count", "max_amount_minor", "channel"])
    channels = s.table("channel")
    for name in channels.names():
        if name not in Channel.__members__:
            channels.fail(name, "unknown channel", f"use one of {_CHANNELS}")
    if not s.has("max_count") and not s.has("max_amount_minor") and not channels.raw:
        return MappingProxyType({})
    default = VelocityLimit(
        s.integer("max_count", 1_000_000, minimum=1, maximum=1_000_000),
        s.integer("max_amount_minor", _MAX_AMOUNT_MINOR, minimum=1, maximum=_MAX_AMOUNT_MINOR),
    )
    limits: dict[Channel, VelocityLimit] = {}
    for channel in Channel:
        if not channels.has(channel.value):
            if s.has("max_count") or s.has("max_amount_minor"):
                limits[channel] = default
            continue
        c = channels.table(channel.value)
        c.check_known(["max_count", "max_amount_minor"])
        limits[channel] = VelocityLimit(
            c.integer("max_count", default.max_count, minimum=1, maximum=1_000_000),
            c.integer("max_amount_minor", default.max_amount_minor, minimum=1, maximum=_MAX_AMOUNT_MINOR),
        )
    return MappingProxyType(limits)


def verification_absent_points(s: Section) -> Mapping[Channel, Mapping[Check, int]]:
    """`[policy.risk_points.verification_absent.<CHANNEL>]`: points per check with no result."""
    out: dict[Channel, Mapping[Check, int]] = {}
    for name in s.names():
        if name not in Channel.__members__:
            s.fail(name, "unknown channel", f"use one of {_CHANNELS}")
        c = s.table(name)
        c.check_known(_CHECKS)
        out[Channel(name)] = MappingProxyType({Check(k): c.integer(k, 0, maximum=100) for k in c.names()})
    return MappingProxyType(out)
