"""The static rules: what can be decided from the request and the policy alone.

Rules, in order (the first that matches decides; card status, checked in Redis,
goes before all of them, and the cumulative limits after):

    card.invalid_pan        14  the PAN fails the Luhn check
    card.expired            54  the card's expiry (YYMM, when sent) is before the transmission time
    verification.<check>    05  the acquirer reports a failed check (cvv, cryptogram, pin)
    mcc_group.blocked       57  the MCC group is never approved in stand-in
    risk_tier.no_stand_in   57  the transaction's risk tier has a zero limit scale
    currency.unsupported    57  no conversion rate to the limit currency
    txn_max.channel         61  amount above the channel's per-transaction maximum (tier-scaled)
    txn_max.mcc_group       61  amount above the MCC group's per-transaction maximum (tier-scaled)

What remains for the counters is an Assessment: the counter to draw on, the
amount in limit currency, the tier-scaled cumulative limit and the exposure
budgets the transaction draws on. Fleet-wide steps come before the card's
(velocity.py, then exposure.py) and may decline it with their own rules:

    velocity.merchant.count / .amount   05  the merchant's window for the channel is full
    velocity.terminal.count / .amount   05  the terminal's window for the channel is full
    exposure_budget.<name>              91  the budget's shard (and its spill shard) is spent
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from authgw.card_expiry import card_expired
from authgw.codes import ResponseCode
from standin.policy import ExposureBudget, RiskTier, StandInPolicy, Velocity, WindowLimit
from standin.tiers import classify
from standin.types import Channel, Check, CheckResult, LimitKind, StandInRequest, luhn_valid

__all__ = [
    "APPROVED_RULE",
    "BUDGET_CODE",
    "VELOCITY_CODE",
    "Assessment",
    "StaticDecline",
    "assess",
    "budget_rule",
]

APPROVED_RULE = "approved"
BUDGET_CODE = ResponseCode.ISSUER_UNAVAILABLE
"""91: the issuer's stand-in capacity is spent; nothing is wrong with the card or the cardholder."""
VELOCITY_CODE = ResponseCode.DO_NOT_HONOUR
"""05, as for a suspected fraud: the acquirer is not told which window stopped it."""


_NO_VELOCITY = Velocity()


def budget_rule(budget: ExposureBudget) -> str:
    """The rule of a decline by `budget`."""
    return f"exposure_budget.{budget.name}"


@dataclass(frozen=True, slots=True)
class StaticDecline:
    """A decline decided without the card's counters."""

    rule: str
    code: ResponseCode


@dataclass(frozen=True, slots=True)
class Assessment:
    """The policy's view of one request, before counters and card status."""

    kind: LimitKind
    mcc_group: str
    tier: RiskTier
    amount_minor: int
    """The amount in limit-currency minor units (rounded up; 0 if the currency is unsupported)."""
    limit: WindowLimit
    """The cumulative limit scaled by the tier."""
    decline: StaticDecline | None
    budgets: tuple[ExposureBudget, ...] = ()
    """The exposure budgets this transaction draws on."""
    budget_fraction: float = 1.0
    """The share of each budget and velocity window this decision may see (local mode:
    LocalSettings.limit_fraction)."""
    velocity: Velocity = _NO_VELOCITY
    """The policy's velocity windows (velocity.py), of the same version as the limits."""
    advised: str = ""
    """The rule of an acquirer advice (an approval already given: recorded and counted whatever the
    limits, card status or static rules say); "" for a stand-in decision."""
    known_limit: WindowLimit | None = None
    """The cumulative limit for a card whose issuer-reported balance is live (the policy's
    known_balance_scale applied; the card's Redis script chooses); None: `limit`."""
    known_decline: StaticDecline | None = None
    """The static decline for such a card (per-transaction maxima scaled the same way); read only
    when known_limit is set."""

    @property
    def declined_anyway(self) -> bool:
        """Declined by a static rule whether or not the card's balance turns out to be known."""
        return self.decline is not None and (self.known_limit is None or self.known_decline is not None)

    def declined_by(self, decline: StaticDecline) -> Assessment:
        """The same assessment declined by `decline` whatever the card's balance (a fleet-wide
        window or budget, a forced decline)."""
        return replace(self, decline=decline, known_decline=decline)

    def for_known_balance(self) -> tuple[WindowLimit, StaticDecline | None]:
        """The limit and static decline that apply when the card's balance is known."""
        if self.known_limit is None:
            return self.limit, self.decline
        return self.known_limit, self.known_decline

    def with_limit_fraction(self, fraction: float) -> Assessment:
        """The same assessment with the cumulative limit, the budgets and the velocity windows scaled
        (local, Redis-less mode)."""
        share = self.budget_fraction * fraction
        known = None if self.known_limit is None else self.known_limit.scaled(fraction)
        return replace(self, limit=self.limit.scaled(fraction), budget_fraction=share, known_limit=known)


def assess(policy: StandInPolicy, request: StandInRequest) -> Assessment:
    """Apply the static rules of `policy` to `request`."""
    group = policy.mcc_group(request.mcc)
    tier = classify(policy, request, group)
    kind = (
        LimitKind.CASH
        if request.channel is Channel.ATM or group in policy.cash_mcc_groups
        else LimitKind.PURCHASE
    )
    rate = policy.currency_rates.get(request.currency)
    amount = math.ceil(request.amount_minor * rate) if rate is not None else 0
    limit = policy.limit(kind).scaled(tier.limit_scale)
    converted = amount if rate is not None else None
    decline = _static_decline(policy, request, group, tier.limit_scale, converted)
    budgets = tuple(b for b in policy.exposure_budgets if b.applies(request.channel, group))
    known_limit, known_decline = None, None
    if policy.known_balance_scale != 1.0:
        scale = tier.limit_scale * policy.known_balance_scale
        known_limit = policy.limit(kind).scaled(scale)
        known_decline = _static_decline(policy, request, group, scale, converted)
    return Assessment(
        kind, group, tier, amount, limit, decline, budgets, velocity=policy.velocity,
        known_limit=known_limit, known_decline=known_decline,
    )  # fmt: skip


def _static_decline(
    policy: StandInPolicy,
    request: StandInRequest,
    group: str,
    scale: float,
    amount: int | None,
) -> StaticDecline | None:
    """The first static rule that declines; `scale` multiplies the per-transaction maxima (the
    tier's, times the known-balance scale where that applies)."""
    if not luhn_valid(request.pan):
        return StaticDecline("card.invalid_pan", ResponseCode.INVALID_CARD_NUMBER)
    if request.card_expiry and card_expired(request.card_expiry, request.transmitted_at):
        return StaticDecline("card.expired", ResponseCode.EXPIRED_CARD)
    for check in Check:
        if request.check(check) is CheckResult.FAILED:
            return StaticDecline(f"verification.{check.value}", ResponseCode.DO_NOT_HONOUR)
    if group in policy.blocked_mcc_groups:
        return StaticDecline("mcc_group.blocked", ResponseCode.NOT_PERMITTED_TO_CARDHOLDER)
    if scale <= 0:
        return StaticDecline("risk_tier.no_stand_in", ResponseCode.NOT_PERMITTED_TO_CARDHOLDER)
    if amount is None:
        return StaticDecline("currency.unsupported", ResponseCode.NOT_PERMITTED_TO_CARDHOLDER)
    if amount > int(policy.txn_max_minor_by_channel[request.channel] * scale):
        return StaticDecline("txn_max.channel", ResponseCode.EXCEEDS_AMOUNT_LIMIT)
    group_max = policy.txn_max_minor_by_mcc_group.get(group)
    if group_max is not None and amount > int(group_max * scale):
        return StaticDecline("txn_max.mcc_group", ResponseCode.EXCEEDS_AMOUNT_LIMIT)
    return None
