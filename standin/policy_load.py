"""Build a StandInPolicy from the `[policy]` table of a TOML file, validating every key.

Every error is a PolicyError naming the file, the dotted key and the fix. Absent
keys take the defaults of StandInPolicy, so a file only states what it changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

from authgw.config import Section, read_toml
from standin.errors import PolicyError
from standin.policy import DEFAULT_MCC_GROUPS, OTHER_GROUP, ChannelRisk, RiskTier, StandInPolicy, WindowLimit
from standin.policy_risk_load import exposure_budgets, velocity, verification_absent_points
from standin.types import Channel

__all__ = ["load_policy", "policy_from_section"]

_DEFAULTS = StandInPolicy()
_GROUP_NAME = r"[a-z][a-z0-9_]{0,31}"
_CHANNELS = ", ".join(c.value for c in Channel)
_MAX_AMOUNT_MINOR = 10**15  # far above any card limit; keeps Lua's doubles exact (2^53)


def load_policy(path: Path) -> StandInPolicy:
    """Read and validate the `[policy]` table of the TOML file at `path`."""
    return policy_from_section(read_toml(path, PolicyError).table("policy"))


def policy_from_section(s: Section) -> StandInPolicy:
    """Build the policy from an already parsed `[policy]` table."""
    s.check_known(
        [
            "home_country", "limit_currency", "currency_rates", "window_length", "window",
            "txn_max_minor", "mcc_groups", "blocked_mcc_groups", "cash_mcc_groups", "tiers", "risk_points",
            "exposure_budgets", "velocity", "known_balance",
        ]
    )  # fmt: skip
    groups = _mcc_groups(s.table("mcc_groups"))
    known_groups = frozenset(groups) | {OTHER_GROUP}
    limit_currency = s.string(
        "limit_currency", _DEFAULTS.limit_currency, pattern="[A-Z]{3}", fix="use ISO 4217 alpha-3, e.g. EUR"
    )
    window = s.duration(
        "window_length", _DEFAULTS.window, minimum=timedelta(seconds=1), maximum=timedelta(days=31)
    )
    windows = s.table("window")
    windows.check_known(["purchase", "cash"])
    txn_max = s.table("txn_max_minor")
    txn_max.check_known(["channel", "mcc_group"])
    risk_points = s.table("risk_points")
    channel_risk, foreign_points, group_points = _risk_points(risk_points, known_groups)
    home = s.string(
        "home_country", _DEFAULTS.home_country, pattern="[A-Z]{2}", fix="use ISO 3166 alpha-2, e.g. FR"
    )
    return StandInPolicy(
        home_country=home,
        limit_currency=limit_currency,
        currency_rates=_currency_rates(s.table("currency_rates"), limit_currency),
        window=window,
        purchase=_window_limit(windows.table("purchase"), _DEFAULTS.purchase),
        cash=_window_limit(windows.table("cash"), _DEFAULTS.cash),
        txn_max_minor_by_channel=(by_channel := _txn_max_by_channel(txn_max.table("channel"))),
        txn_max_minor_by_mcc_group=_txn_max_by_group(txn_max.table("mcc_group"), known_groups),
        mcc_group_by_mcc=MappingProxyType({mcc: g for g, mccs in groups.items() for mcc in mccs}),
        blocked_mcc_groups=_group_set(s, "blocked_mcc_groups", _DEFAULTS.blocked_mcc_groups, known_groups),
        cash_mcc_groups=_group_set(s, "cash_mcc_groups", _DEFAULTS.cash_mcc_groups, known_groups),
        tiers=_tiers(s),
        channel_risk=channel_risk,
        foreign_merchant_points=foreign_points,
        mcc_group_points=group_points,
        verification_absent_points=verification_absent_points(risk_points.table("verification_absent")),
        exposure_budgets=exposure_budgets(s, known_groups, by_channel),
        velocity=velocity(s.table("velocity")),
        known_balance_scale=_known_balance_scale(s.table("known_balance")),
    )  # fmt: skip


def _known_balance_scale(s: Section) -> float:
    """`[policy.known_balance] limit_scale`: 1.0 to 10.0 (see StandInPolicy.known_balance_scale)."""
    s.check_known(["limit_scale"])
    return s.number("limit_scale", _DEFAULTS.known_balance_scale, minimum=1.0, maximum=10.0)


def _mcc_groups(s: Section) -> dict[str, tuple[str, ...]]:
    """Defaults, with each group named in the file replacing the default group of that name."""
    configured: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for group in s.names():
        if group == OTHER_GROUP:
            s.fail(group, f"'{OTHER_GROUP}' is every MCC not listed elsewhere", "remove it")
        if not _matches(_GROUP_NAME, group):
            s.fail(group, "invalid group name", "use lower_snake_case, at most 32 characters")
        mccs = tuple(_expand_mccs(s, group))
        for mcc in mccs:
            if mcc in owner:
                s.fail(group, f"MCC {mcc} is also in group {owner[mcc]!r}", "list each MCC in one group only")
            owner[mcc] = group
        configured[group] = mccs
    groups = {g: tuple(m for m in mccs if m not in owner) for g, mccs in DEFAULT_MCC_GROUPS.items()}
    groups.update(configured)
    return groups


def _expand_mccs(s: Section, group: str) -> list[str]:
    out: list[str] = []
    for item in s.strings(group, ()):
        low, _, high = item.partition("-")
        high = high or low
        if not (_matches("[0-9]{4}", low) and _matches("[0-9]{4}", high)) or low > high:
            s.fail(group, f"{item!r} is not an MCC or range", 'write 4-digit MCCs or ranges like "7800-7802"')
        out.extend(f"{m:04d}" for m in range(int(low), int(high) + 1))
    return out


def _currency_rates(s: Section, limit_currency: str) -> Mapping[str, float]:
    rates: dict[str, float] = {limit_currency: 1.0}
    for currency in s.names():
        if not _matches("[A-Z]{3}", currency):
            s.fail(currency, "not an ISO 4217 alpha-3 code", "use codes like USD")
        rates[currency] = s.number(currency, 1.0, minimum=1e-9, maximum=1e9)
    if rates[limit_currency] != 1.0:
        s.fail(limit_currency, "the limit currency converts to itself", "set it to 1.0 or remove it")
    return MappingProxyType(rates)


def _window_limit(s: Section, default: WindowLimit) -> WindowLimit:
    s.check_known(["max_amount_minor", "max_count"])
    return WindowLimit(
        max_amount_minor=s.integer("max_amount_minor", default.max_amount_minor, maximum=_MAX_AMOUNT_MINOR),
        max_count=s.integer("max_count", default.max_count, maximum=10_000),
    )


def _txn_max_by_channel(s: Section) -> Mapping[Channel, int]:
    values = dict(_DEFAULTS.txn_max_minor_by_channel)
    for name in s.names():
        if name not in Channel.__members__:
            s.fail(name, "unknown channel", f"use one of {_CHANNELS}")
        values[Channel(name)] = s.integer(name, 0, maximum=_MAX_AMOUNT_MINOR)
    return MappingProxyType(values)


def _txn_max_by_group(s: Section, known_groups: frozenset[str]) -> Mapping[str, int]:
    values = {g: v for g, v in _DEFAULTS.txn_max_minor_by_mcc_group.items() if g in known_groups}
    for group in s.names():
        _require_group(s, group, known_groups)
        values[group] = s.integer(group, 0, maximum=_MAX_AMOUNT_MINOR)
    return MappingProxyType(values)


def _group_set(
    s: Section, name: str, default: frozenset[str], known_groups: frozenset[str]
) -> frozenset[str]:
    if not s.has(name):
        return default & known_groups
    groups = s.strings(name, ())
    for group in groups:
        if group not in known_groups:
            s.fail(
                name,
                f"unknown MCC group {group!r}",
                f"define it under [policy.mcc_groups] or use one of {sorted(known_groups)}",
            )
    return frozenset(groups)


def _tiers(s: Section) -> tuple[RiskTier, ...]:
    raw = s.raw.get("tiers")
    if raw is None:
        return _DEFAULTS.tiers
    if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
        s.fail(
            "tiers",
            "expected a non-empty array of tables",
            "write [[policy.tiers]] blocks with name and limit_scale",
        )
    tiers: list[RiskTier] = []
    for i, table in enumerate(raw):
        t = Section(s.file, f"{s.key('tiers')}[{i}]", table, PolicyError)
        t.check_known(["name", "limit_scale"])
        name = t.string("name", "", pattern=_GROUP_NAME, fix="give each tier a lower_snake_case name")
        scale = t.number("limit_scale", -1.0, minimum=0.0, maximum=1.0)
        if any(prev.name == name for prev in tiers):
            t.fail("name", f"tier {name!r} is defined twice", "give each tier a distinct name")
        if tiers and scale > tiers[-1].limit_scale:
            t.fail(
                "limit_scale",
                "a riskier tier may not get more than the tier before it",
                f"use at most {tiers[-1].limit_scale}",
            )
        tiers.append(RiskTier(name, scale))
    return tuple(tiers)


def _risk_points(
    s: Section, known_groups: frozenset[str]
) -> tuple[Mapping[Channel, ChannelRisk], int, Mapping[str, int]]:
    s.check_known(["channel", "foreign_merchant", "mcc_group", "verification_absent"])
    channels = s.table("channel")
    risk = dict(_DEFAULTS.channel_risk)
    for name in channels.names():
        if name not in Channel.__members__:
            channels.fail(name, "unknown channel", f"use one of {_CHANNELS}")
        c = channels.table(name)
        c.check_known(["authenticated", "unauthenticated"])
        default = risk[Channel(name)]
        risk[Channel(name)] = ChannelRisk(
            c.integer("authenticated", default.authenticated_points, maximum=100),
            c.integer("unauthenticated", default.unauthenticated_points, maximum=100),
        )
    mcc = s.table("mcc_group")
    points = {g: p for g, p in _DEFAULTS.mcc_group_points.items() if g in known_groups}
    for group in mcc.names():
        _require_group(mcc, group, known_groups)
        points[group] = mcc.integer(group, 0, maximum=100)
    foreign = s.integer("foreign_merchant", _DEFAULTS.foreign_merchant_points, maximum=100)
    return MappingProxyType(risk), foreign, MappingProxyType(points)


def _require_group(s: Section, group: str, known_groups: frozenset[str]) -> None:
    if group not in known_groups:
        s.fail(
            group,
            "unknown MCC group",
            f"define it under [policy.mcc_groups] or use one of {sorted(known_groups)}",
        )


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None
