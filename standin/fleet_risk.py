"""The fleet-wide steps around a card's decision: velocity windows, then the exposure budgets.

admit    velocity.py (1 round trip when the channel has a window), then exposure.py's
         reserve (1 per budget the transaction draws on); a request already declined by a
         static rule skips both. A decline here becomes the assessment's static decline,
         which DECIDE records (the card's record, replay and journal stay as they are).
         An acquirer advice (an approval already given) passes the windows; its amount is
         reserved on the budgets that have room for it (a spent budget cannot refuse it).
settle   after DECIDE: release the reservations unless DECIDE recorded a fresh approval
         under this decision id.
"""

from __future__ import annotations

from dataclasses import replace

from standin.exposure import ExposureBudgets, Reservation
from standin.outcome import Outcome
from standin.rules import Assessment
from standin.types import StandInRequest
from standin.velocity import VelocityWindows

__all__ = ["FleetRisk"]


class FleetRisk:
    """Velocity and exposure budgets for one engine."""

    def __init__(self, velocity: VelocityWindows, budgets: ExposureBudgets) -> None:
        self.velocity = velocity
        self.budgets = budgets

    async def admit(
        self, token: str, request: StandInRequest, digest: str, assessment: Assessment, decision_id: str
    ) -> tuple[Assessment, list[Reservation]]:
        """The assessment DECIDE should use, and what was reserved for it (raises StoreUnavailableError)."""
        if assessment.decline is not None:
            return assessment, []
        if assessment.advised:  # an approval already given: counted in the budget if there is room
            held, _ = await self.budgets.reserve(token, assessment, decision_id)
            return assessment, held
        if self.velocity.applies(request):
            decline = await self.velocity.check(request, digest, assessment.amount_minor)
            if decline is not None:
                return replace(assessment, decline=decline), []
        if not assessment.budgets:
            return assessment, []
        held, decline = await self.budgets.reserve(token, assessment, decision_id)
        if decline is not None:
            return replace(assessment, decline=decline), []
        return assessment, held

    async def settle(self, held: list[Reservation], outcome: Outcome, decision_id: str) -> None:
        """Keep the reservations of a fresh approval, release the others (never raises)."""
        if not held:
            return
        if outcome.fresh and outcome.response_code.approved and outcome.decision_id == decision_id:
            return
        await self.budgets.release(held)
