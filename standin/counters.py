"""Fleet-wide card counters, card status and idempotency in Redis: one script call per decision.

Every gateway of the fleet runs the same DECIDE script against the same keys, so
Redis serializes them: two gateways can never together pass a card's limit,
and a request id decided by one gateway is answered with that same decision by
any other (and counted once).
"""

from __future__ import annotations

from datetime import timedelta

from redis.commands.core import AsyncScript

from standin import keys, lua
from standin.outcome import Outcome, Proposal
from standin.redis_io import RedisGate
from standin.rules import Assessment
from standin.types import LimitKind

__all__ = ["RedisCounters"]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def spend_member(decision_id: str, amount_minor: int) -> str:
    """The sorted-set member of one approval (see lua.py for the scheme)."""
    return f"{decision_id}:{amount_minor}"


class RedisCounters:
    """Decides against the fleet's counters and records the outcome per request id."""

    def __init__(self, gate: RedisGate, *, window: timedelta, idempotency_ttl: timedelta) -> None:
        self._gate = gate
        self._window_ms = int(window / timedelta(milliseconds=1))
        self._idem_ttl_ms = int(idempotency_ttl / timedelta(milliseconds=1))
        self._decide: AsyncScript = gate.redis.register_script(lua.DECIDE)
        self._absorb: AsyncScript = gate.redis.register_script(lua.ABSORB)

    async def decide(
        self, token: str, request_id: str, assessment: Assessment, proposal: Proposal
    ) -> Outcome:
        """Run the decision script; raises StoreUnavailableError when Redis cannot answer."""
        now_ms = proposal.decided_at_ms
        decline = assessment.decline
        script_keys = [
            keys.idempotency_key(token, request_id),
            keys.card_status_key(token),
            keys.spend_key(token, assessment.kind),
        ]
        args: list[str | int] = [
            now_ms,
            now_ms - self._window_ms,
            self._window_ms,
            assessment.amount_minor,
            assessment.limit.max_amount_minor,
            assessment.limit.max_count,
            assessment.kind.value,
            decline.rule if decline else "",
            decline.code.value if decline else "",
            proposal.decision_id,
            proposal.approval_code,
            proposal.risk_tier,
            proposal.reason.value,
            proposal.gateway_instance,
            self._idem_ttl_ms,
        ]

        async def op() -> list[int | bytes]:
            reply: list[int | bytes] = await self._decide(keys=script_keys, args=args)
            return reply

        fresh, *values = await self._gate.call("decide", op)
        return Outcome.from_record(fresh == 1, [_text(v) for v in values if isinstance(v, bytes | str)])

    async def absorb(
        self,
        token: str,
        *,
        request_id: str,
        kind: LimitKind,
        amount_minor: int,
        outcome: Outcome,
        now_ms: int,
    ) -> bool:
        """Bring a locally made decision into the fleet state; False if its request id maps elsewhere."""
        member = spend_member(outcome.decision_id, amount_minor) if outcome.response_code.approved else ""
        script_keys = [keys.idempotency_key(token, request_id), keys.spend_key(token, kind)]
        args: list[str | int] = [
            outcome.decided_at_ms,
            now_ms - self._window_ms,
            self._window_ms,
            member,
            self._idem_ttl_ms,
            *outcome.record_values(),
        ]

        async def op() -> int:
            reply: int = await self._absorb(keys=script_keys, args=args)
            return reply

        return await self._gate.call("absorb", op) == 1
