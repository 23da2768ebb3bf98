"""The exposure budget: a fleet-wide ceiling on what stand-in approves per period, in Redis.

A budget cannot live in the card's hash slot (it is every card's), so it is a step of its
own around the card's decision, on keys of its own (keys.py):

    reserve   before DECIDE: one script on the shard the card's token picks; a full shard
              spills to the next one (one more round trip, only then); both full: the
              request is declined 91, rule exposure_budget.<name>, and DECIDE records that
    DECIDE    the card's script (counters.py), as without a budget
    release   after DECIDE, unless it recorded a fresh approval under this very decision id
              (a decline, a replay of an earlier decision): the reservation is given back,
              concurrently with the journal append. An approval keeps its reservation, which
              expires with the period: there is no separate confirm step.

Round trips per decision with B budgets: approvals 2 + B (reserve(s), DECIDE, APPEND);
declines 2 + B with the release beside the append; + 1 for each spill.

The budgets are the live policy's (policy_live.py): a decision reserves on those of the
version deciding it (Assessment.budgets); status, metrics and absorb read the version in
force. A new ceiling or period applies to the next reserve (what is already reserved stays);
a version changing a running budget's `shards` is refused (its reservations would be summed
over other keys). On a Cluster every script is followed by WAIT on its own connection
(redis_durable.py), like DECIDE: a reserve no replica acknowledged is a lost reply.

Each shard holds max_amount_minor / shards, so the fleet never approves more than the
budget; traffic spread by card token fills the shards evenly, and the spill uses what a
quiet shard leaves.

Lost replies (a timeout, a connection broken after sending) never under-count:
  - reserve: Redis may hold the reservation though the engine does not know it; the engine
    decides locally (Redis counted as down), under the same decision id. Approved there, the
    reservation stays: the fleet's exposure then counts that local approval. Declined, it is
    an orphan, released by the first budget call once Redis answers again. A gateway that
    dies first leaves it to expire with the period (the ceiling is low by that amount until).
  - DECIDE after a successful reserve: the card's decision may have been an approval the
    acquirer was never told; the reservation is kept (over-counted until the period ends).
  - release: remembered as an orphan and retried like a lost reserve.

Local mode (Redis away): each gateway approves at most LocalSettings.limit_fraction of each
budget on its own, counting all of its local approvals of the period (sqlite_rules.py), like
the card limits. When the local journal is moved to Redis (migrate.py), each local approval
still in its period is counted on its card's shard at its own time (absorb; idempotent by
decision id: one whose lost reservation was kept is not counted twice, unless that
reservation had spilled to the next shard: an over-count, the safe side).

A reversal of a stand-in approval gives back to the budgets what it gives back to the card's
window (reversed(): all of it, or down to a partial reversal's final amount), once it is
applied in Redis, or when a local reversal is moved there. A repeated reversal gives nothing
more; a release whose reply is lost leaves the amount counted until the period ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from standin import keys, lua_risk
from standin.errors import StoreUnavailableError
from standin.policy import ExposureBudget, StandInPolicy
from standin.redis_io import RedisGate
from standin.rules import BUDGET_CODE, Assessment, StaticDecline, budget_rule
from standin.types import Channel

__all__ = ["BudgetExposure", "ExposureBudgets", "Reservation"]

log = logging.getLogger(__name__)

SPILL_SHARDS = 1
"""Shards tried after the card's own one when it is full."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """An amount held on one shard of a budget for one decision."""

    budget: str
    shard: int
    member: str

    @property
    def keys(self) -> list[str]:
        return list(keys.budget_keys(self.budget, self.shard))


@dataclass(frozen=True, slots=True)
class BudgetExposure:
    """A budget's approved amount in its period, fleet-wide, against its ceiling."""

    name: str
    exposure_minor: int
    budget_minor: int
    period_s: float


def _shards_of(token: str, budget: ExposureBudget) -> list[int]:
    """The shards a card's reservation may be on, in the order reserve tries them: its own, then
    up to SPILL_SHARDS next ones (release after a reversal tries the same)."""
    home = keys.budget_shard_of(token, budget.shards)
    return [(home + i) % budget.shards for i in range(min(1 + SPILL_SHARDS, budget.shards))]


class ExposureBudgets:
    """Reserves and releases on the budgets' shards (see the module docstring)."""

    def __init__(self, gate: RedisGate, policy: Callable[[], StandInPolicy]) -> None:
        """Args:
        policy: the policy in force now (the live one: LivePolicy.current), read per call.
        """
        self._gate = gate
        self._policy = policy
        self._reserve = gate.script(lua_risk.BUDGET_RESERVE)
        self._release = gate.script(lua_risk.BUDGET_RELEASE)
        self._total = gate.script(lua_risk.WINDOW_TOTAL)
        self._absorb = gate.script(lua_risk.BUDGET_ABSORB)
        self.orphans: set[Reservation] = set()
        """Reservations whose reply (reserve or release) was lost: released once Redis answers."""

    async def reserve(
        self, token: str, assessment: Assessment, decision_id: str
    ) -> tuple[list[Reservation], StaticDecline | None]:
        """Hold the amount on every budget the transaction draws on, or decline (holding nothing).

        Raises StoreUnavailableError (what was held stays in `orphans`).
        """
        if self.orphans:
            await self.release_orphans()
        held: list[Reservation] = []
        member = f"{decision_id}:{assessment.amount_minor}"
        for budget in assessment.budgets:
            reservation = await self._reserve_one(token, budget, member, assessment.amount_minor)
            if reservation is None:
                await self.release(held)
                return [], StaticDecline(budget_rule(budget), BUDGET_CODE)
            held.append(reservation)
        return held, None

    async def _reserve_one(
        self, token: str, budget: ExposureBudget, member: str, amount: int
    ) -> Reservation | None:
        period_ms = int(budget.period.total_seconds() * 1000)
        for shard in _shards_of(token, budget):
            reservation = Reservation(budget.name, shard, member)

            async def op(r: Reservation = reservation) -> int:
                reply: int = await self._reserve(
                    keys=r.keys, args=[period_ms, member, amount, budget.shard_cap()]
                )
                return reply

            try:
                reserved = await self._gate.call("budget reserve", op)
            except StoreUnavailableError as exc:
                if exc.maybe_applied:
                    self.orphans.add(reservation)
                raise
            if reserved:
                return reservation
        return None

    async def release(self, held: list[Reservation]) -> None:
        """Give back `held`; one whose reply is lost is kept in `orphans` (never raises)."""
        for reservation in held:

            async def op(r: Reservation = reservation) -> int:
                reply: int = await self._release(keys=r.keys, args=[r.member])
                return reply

            try:
                await self._gate.call("budget release", op)
            except StoreUnavailableError as exc:
                log.warning("budget reservation %s kept for a later release: %s", reservation.member, exc)
                self.orphans.add(reservation)
            else:
                self.orphans.discard(reservation)

    async def reversed(self, token: str, released: tuple[str, str]) -> None:
        """A reversal reduced an approval (`released`: its card window member before, after; "" gone):
        do the same to its reservation on every budget holding it (never raises: a failure keeps
        the amount counted until the period ends, logged).

        The card's record does not say which budgets and shard took the reservation, so each
        budget of the policy in force is tried on the card's shard, then its spill shard (the
        script is idempotent): up to 1 + SPILL_SHARDS round trips per budget, on reversals only.
        """
        before, after = released
        for budget in self._policy().exposure_budgets:
            for shard in _shards_of(token, budget):
                shard_keys = list(keys.budget_keys(budget.name, shard))

                async def op(k: list[str] = shard_keys) -> int:
                    reply: int = await self._release(keys=k, args=[before, after])
                    return reply

                try:
                    if await self._gate.call("budget reversal", op):
                        break
                except StoreUnavailableError as exc:
                    log.warning("budget %s keeps %s after its reversal: %s", budget.name, before, exc)
                    return

    def keep(self, decision_id: str) -> None:
        """`decision_id` was approved after all (locally): its lost reservations count, never released."""
        self.orphans = {r for r in self.orphans if not r.member.startswith(f"{decision_id}:")}

    async def release_orphans(self) -> None:
        """Release what lost replies left behind (raises StoreUnavailableError if Redis is still away)."""
        for reservation in list(self.orphans):
            await self.release([reservation])
            if reservation in self.orphans:
                raise StoreUnavailableError("redis budget release: still unavailable", maybe_applied=False)

    async def absorb(self, token: str, fields: dict[str, str], amount_minor: int, decided_at_ms: int) -> None:
        """Count a local approval being moved to Redis (its journal `fields`) on its card's shards.

        Raises StoreUnavailableError (the move is retried, and counting is idempotent).
        """
        policy = self._policy()
        channel, group = Channel(fields["channel"]), policy.mcc_group(fields["mcc"])
        member = f"{fields['decision_id']}:{amount_minor}"
        for budget in policy.exposure_budgets:
            if not budget.applies(channel, group):
                continue
            shard_keys = list(keys.budget_keys(budget.name, keys.budget_shard_of(token, budget.shards)))
            args: list[int | str] = [
                int(budget.period.total_seconds() * 1000),
                member,
                amount_minor,
                decided_at_ms,
            ]

            async def op(k: list[str] = shard_keys, a: list[int | str] = args) -> int:
                reply: int = await self._absorb(keys=k, args=a)
                return reply

            await self._gate.call("budget absorb", op)

    async def exposure(self) -> list[BudgetExposure]:
        """Every budget's approved amount in its period, over its shards (raises StoreUnavailableError)."""
        out = []
        for budget in self._policy().exposure_budgets:
            period_ms = int(budget.period.total_seconds() * 1000)
            total = 0
            for shard in range(budget.shards):
                shard_keys = list(keys.budget_keys(budget.name, shard))

                async def op(k: list[str] = shard_keys, period: int = period_ms) -> int:
                    reply: int = await self._total(keys=k, args=[period])
                    return reply

                total += await self._gate.call("budget total", op)
            seconds = budget.period.total_seconds()
            out.append(BudgetExposure(budget.name, total, budget.max_amount_minor, seconds))
        return out
