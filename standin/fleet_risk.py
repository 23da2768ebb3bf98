"""The fleet-wide steps around a card's decision: velocity windows, then the exposure budgets.

Both follow the live policy: the windows and budgets a decision draws on come with its
Assessment (rules.assess, from the version deciding it).

admit    velocity.py (1 round trip when the channel has a window), then exposure.py's
         reserve (1 per budget the transaction draws on); a request already declined by a
         static rule skips both. A decline here becomes the assessment's static decline,
         which DECIDE records (the card's record, replay and journal stay as they are).
         An acquirer advice (an approval already given) passes the windows; its amount is
         reserved on the budgets that have room for it (a spent budget cannot refuse it).
settle   after DECIDE: release the reservations unless DECIDE recorded a fresh approval
         under this decision id.
local    Redis away: this gateway's own velocity windows (velocity.LocalVelocity, its share of
         each); the budgets' local shares are counted by the local journal (sqlite_rules.py).
"""

from __future__ import annotations

from standin.exposure import ExposureBudgets, Reservation
from standin.outcome import Outcome
from standin.rules import Assessment
from standin.types import StandInRequest
from standin.velocity import LocalVelocity, VelocityWindows, applies

__all__ = ["FleetRisk"]


class FleetRisk:
    """Velocity and exposure budgets for one engine."""

    def __init__(self, velocity: VelocityWindows, budgets: ExposureBudgets) -> None:
        self.velocity = velocity
        self.budgets = budgets
        self.local_velocity = LocalVelocity()

    async def admit(
        self, token: str, request: StandInRequest, digest: str, assessment: Assessment, decision_id: str
    ) -> tuple[Assessment, list[Reservation]]:
        """The assessment DECIDE should use, and what was reserved for it (raises StoreUnavailableError)."""
        if assessment.declined_anyway:
            return assessment, []
        if assessment.advised:  # an approval already given: counted in the budget if there is room
            held, _ = await self.budgets.reserve(token, assessment, decision_id)
            return assessment, held
        if applies(assessment.velocity, request):
            decline = await self.velocity.check(request, digest, assessment.amount_minor, assessment.velocity)
            if decline is not None:
                return assessment.declined_by(decline), []
        if not assessment.budgets:
            return assessment, []
        held, decline = await self.budgets.reserve(token, assessment, decision_id)
        if decline is not None:
            return assessment.declined_by(decline), []
        return assessment, held

    def admit_locally(
        self, request: StandInRequest, digest: str, assessment: Assessment, now_ms: int
    ) -> Assessment:
        """The assessment the local journal should use: declined when this gateway's share of a
        velocity window is full (`assessment` is already scaled to the local share)."""
        if assessment.decline is not None or assessment.advised or not applies(assessment.velocity, request):
            return assessment
        decline = self.local_velocity.check(
            request, digest, assessment.amount_minor, assessment.velocity,
            fraction=assessment.budget_fraction, now_ms=now_ms,
        )  # fmt: skip
        return assessment if decline is None else assessment.declined_by(decline)

    async def settle(self, held: list[Reservation], outcome: Outcome, decision_id: str) -> None:
        """Keep the reservations of a fresh approval, release the others (never raises)."""
        if not held:
            return
        if outcome.fresh and outcome.response_code.approved and outcome.decision_id == decision_id:
            return
        await self.budgets.release(held)
