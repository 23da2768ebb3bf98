"""The stand-in risk policy: limits, MCC groups and risk tiers, as frozen data.

Amounts are integer minor units of `limit_currency` (cents for EUR). The
defaults here are what `config/standin.example.toml` documents; a policy file
only needs the values it changes (see policy_load.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import TypeVar

from standin.types import Channel, Check, LimitKind

__all__ = [
    "DEFAULT_MCC_GROUPS",
    "OTHER_GROUP",
    "ChannelRisk",
    "ExposureBudget",
    "RiskTier",
    "StandInPolicy",
    "Velocity",
    "VelocityLimit",
    "WindowLimit",
]

OTHER_GROUP = "other"  # every MCC not listed in a group

DEFAULT_MCC_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "groceries": ("5411", "5422", "5441", "5451", "5462", "5499"),
        "fuel": ("5172", "5541", "5542", "5983"),
        "pharmacy": ("5122", "5912"),
        "transport": ("4111", "4112", "4121", "4131", "4784", "4789", "7523"),
        "restaurants": ("5812", "5813", "5814"),
        "cash": ("6010", "6011"),
        "gambling": ("7800", "7801", "7802", "7995"),
        "quasi_cash": ("6050", "6051", "6540"),
        "money_transfer": ("4829", "6536", "6537", "6538"),
    }
)


K = TypeVar("K")
V = TypeVar("V")


def _freeze(items: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(items))


def _mcc_index(groups: Mapping[str, tuple[str, ...]]) -> Mapping[str, str]:
    return _freeze({mcc: group for group, mccs in groups.items() for mcc in mccs})


@dataclass(frozen=True)
class WindowLimit:
    """Cumulative limit per card over the sliding window, for one kind of transaction."""

    max_amount_minor: int
    """Approved amount a card may reach in the window (limit-currency minor units)."""
    max_count: int
    """Approved transactions a card may reach in the window."""

    def scaled(self, fraction: float) -> WindowLimit:
        """This limit multiplied by `fraction`, rounded down (never up: limits are ceilings)."""
        return WindowLimit(int(self.max_amount_minor * fraction), int(self.max_count * fraction))


@dataclass(frozen=True)
class RiskTier:
    """A risk tier: the fraction of every limit a transaction in it may use."""

    name: str
    limit_scale: float
    """1.0 = full limits, 0.0 = never approved in stand-in."""


@dataclass(frozen=True)
class ChannelRisk:
    """Risk points a channel adds, with and without cardholder authentication (PIN or 3-D Secure)."""

    authenticated_points: int
    unauthenticated_points: int


@dataclass(frozen=True)
class ExposureBudget:
    """A fleet-wide ceiling on the amount stand-in approves in a sliding period (exposure.py)."""

    name: str
    """Names the budget in rules (exposure_budget.<name>), metrics (window=<name>) and status."""
    max_amount_minor: int
    """Approved amount (limit-currency minor units) the fleet may reach in the period."""
    period: timedelta
    shards: int = 8
    """Redis keys the budget is split over (each holds max_amount_minor / shards)."""
    mcc_groups: frozenset[str] = frozenset()
    """Only transactions in these MCC groups draw on it (empty: every group)."""
    channels: frozenset[Channel] = frozenset()
    """Only transactions on these channels draw on it (empty: every channel)."""

    def applies(self, channel: Channel, mcc_group: str) -> bool:
        """Whether a transaction on `channel` in `mcc_group` draws on this budget."""
        return (not self.channels or channel in self.channels) and (
            not self.mcc_groups or mcc_group in self.mcc_groups
        )

    def shard_cap(self, fraction: float = 1.0) -> int:
        """What one shard may hold (rounded down: a ceiling), scaled by `fraction`."""
        return int(self.max_amount_minor * fraction) // self.shards


@dataclass(frozen=True)
class VelocityLimit:
    """Stand-in requests one merchant (or terminal) may send per velocity window, on one channel."""

    max_count: int
    max_amount_minor: int


@dataclass(frozen=True)
class Velocity:
    """Fraud velocity: windows per merchant and per terminal, by channel (velocity.py)."""

    window: timedelta = timedelta(minutes=1)
    merchant: Mapping[Channel, VelocityLimit] = field(default_factory=lambda: _freeze({}))
    """Per channel; a channel absent here has no merchant window."""
    terminal: Mapping[Channel, VelocityLimit] = field(default_factory=lambda: _freeze({}))
    """Per channel; a channel absent here has no terminal window."""

    @property
    def enabled(self) -> bool:
        return bool(self.merchant or self.terminal)


_DEFAULT_CHANNEL_RISK = {
    Channel.POS_CHIP: ChannelRisk(0, 1),
    Channel.POS_CONTACTLESS: ChannelRisk(0, 1),
    Channel.POS_MAGSTRIPE: ChannelRisk(2, 3),
    Channel.ECOMMERCE: ChannelRisk(1, 3),
    Channel.MOTO: ChannelRisk(2, 2),
    Channel.ATM: ChannelRisk(0, 3),
}

_DEFAULT_TXN_MAX_BY_CHANNEL = {
    Channel.POS_CHIP: 100_000,
    Channel.POS_CONTACTLESS: 5_000,
    Channel.POS_MAGSTRIPE: 20_000,
    Channel.ECOMMERCE: 50_000,
    Channel.MOTO: 20_000,
    Channel.ATM: 40_000,
}

_DEFAULT_TXN_MAX_BY_GROUP = {
    "groceries": 30_000,
    "fuel": 15_000,
    "pharmacy": 20_000,
    "transport": 20_000,
    "restaurants": 20_000,
    "cash": 40_000,
    OTHER_GROUP: 50_000,
}

_DEFAULT_TIERS = (
    RiskTier("full", 1.0),
    RiskTier("reduced", 0.5),
    RiskTier("minimal", 0.2),
    RiskTier("none", 0.0),
)


@dataclass(frozen=True)
class StandInPolicy:
    """Everything stand-in needs to decide, apart from the card's live counters and status."""

    home_country: str = "FR"
    """ISO 3166 alpha-2 country of the issuer: merchants elsewhere are foreign."""
    limit_currency: str = "EUR"
    """ISO 4217 currency of every *_minor limit."""
    currency_rates: Mapping[str, float] = field(default_factory=lambda: _freeze({"EUR": 1.0}))
    """Limit-currency minor units per minor unit of each accepted currency (set them high:
    conversion rounds up); requests in other currencies are declined 57."""
    window: timedelta = timedelta(hours=24)
    """Length of the sliding window of the cumulative limits."""
    purchase: WindowLimit = WindowLimit(150_000, 15)
    """Cumulative limit for purchases."""
    cash: WindowLimit = WindowLimit(50_000, 3)
    """Cumulative limit for cash (ATM channel or a cash MCC group)."""
    txn_max_minor_by_channel: Mapping[Channel, int] = field(
        default_factory=lambda: _freeze(_DEFAULT_TXN_MAX_BY_CHANNEL)
    )
    """Largest single transaction per channel, before tier scaling."""
    txn_max_minor_by_mcc_group: Mapping[str, int] = field(
        default_factory=lambda: _freeze(_DEFAULT_TXN_MAX_BY_GROUP)
    )
    """Largest single transaction per MCC group, before tier scaling (absent: no group cap)."""
    mcc_group_by_mcc: Mapping[str, str] = field(default_factory=lambda: _mcc_index(DEFAULT_MCC_GROUPS))
    """MCC → group; unlisted MCCs are in OTHER_GROUP."""
    blocked_mcc_groups: frozenset[str] = frozenset({"gambling", "quasi_cash", "money_transfer"})
    """Groups never approved in stand-in (answered 57)."""
    cash_mcc_groups: frozenset[str] = frozenset({"cash"})
    """Groups counted against the cash limit even outside the ATM channel."""
    tiers: tuple[RiskTier, ...] = _DEFAULT_TIERS
    """Tiers by increasing risk: a transaction with risk score s falls in tiers[min(s, len - 1)]."""
    channel_risk: Mapping[Channel, ChannelRisk] = field(
        default_factory=lambda: _freeze(_DEFAULT_CHANNEL_RISK)
    )
    """Risk points per channel."""
    foreign_merchant_points: int = 1
    """Risk points added when the merchant country is not home_country."""
    mcc_group_points: Mapping[str, int] = field(default_factory=lambda: _freeze({OTHER_GROUP: 1}))
    """Risk points added per MCC group (absent: 0)."""
    verification_absent_points: Mapping[Channel, Mapping[Check, int]] = field(
        default_factory=lambda: _freeze({})
    )
    """Risk points added per channel for each check the request carries no result of (absent: 0;
    most terminal traffic carries none, so by default an absent result costs nothing)."""
    exposure_budgets: tuple[ExposureBudget, ...] = ()
    """Fleet-wide ceilings on approved amounts (none: no ceiling)."""
    velocity: Velocity = Velocity()
    """Merchant and terminal windows (none by default)."""
    known_balance_scale: float = 1.0
    """For a card whose issuer-reported balance in the transaction's currency is live (balances.py),
    the per-transaction maxima and the cumulative limit are multiplied by this, after the tier's
    scale; the balance still caps every approval. 1.0: a known balance only ever declines more.
    Above 1, the risk team trades the generic limits' margin for the issuer's own figure."""

    def mcc_group(self, mcc: str) -> str:
        """The MCC group of `mcc`."""
        return self.mcc_group_by_mcc.get(mcc, OTHER_GROUP)

    def limit(self, kind: LimitKind) -> WindowLimit:
        """The cumulative limit of `kind`."""
        return self.cash if kind is LimitKind.CASH else self.purchase

    @property
    def mcc_groups(self) -> frozenset[str]:
        """Every group name the policy knows, OTHER_GROUP included."""
        return frozenset(self.mcc_group_by_mcc.values()) | {OTHER_GROUP}
