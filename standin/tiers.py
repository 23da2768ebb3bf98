"""Risk tiers: how much of its limits a transaction may use, from how it was made.

The risk score adds points for the channel (fewer when the cardholder proved
presence with a PIN or 3-D Secure), for a foreign merchant and for the MCC
group, and for each verification the request carries no result of, as the policy
sets per channel (none by default). The tier is the policy's tiers[min(score, last)]: chip and PIN at home
stays in the first (full limits); magstripe, unauthenticated e-commerce or an
ATM without PIN land in reduced or zero tiers.
"""

from __future__ import annotations

from standin.policy import RiskTier, StandInPolicy
from standin.types import CheckResult, StandInRequest

__all__ = ["classify", "risk_score"]


def risk_score(policy: StandInPolicy, request: StandInRequest, mcc_group: str) -> int:
    """Risk points of `request` under `policy`."""
    authenticated = request.pin_verified or request.cardholder_authenticated
    channel = policy.channel_risk[request.channel]
    score = channel.authenticated_points if authenticated else channel.unauthenticated_points
    if request.merchant_country != policy.home_country:
        score += policy.foreign_merchant_points
    absent = policy.verification_absent_points.get(request.channel, {})
    score += sum(points for check, points in absent.items() if request.check(check) is CheckResult.ABSENT)
    return score + policy.mcc_group_points.get(mcc_group, 0)


def classify(policy: StandInPolicy, request: StandInRequest, mcc_group: str) -> RiskTier:
    """The risk tier of `request`."""
    score = risk_score(policy, request, mcc_group)
    return policy.tiers[min(score, len(policy.tiers) - 1)]
