"""Fleet-wide card counters, card status, request records and reversals in Redis: one script per step.

Every gateway of the fleet runs the same scripts against the same keys, so Redis
serializes them: two gateways can never together pass a card's limit, and a
request decided by one gateway is answered with that same decision by any other
(and counted once). See lua.py for what each script does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from redis.commands.core import AsyncScript

from standin import keys, lua
from standin.errors import ReusedRequestIdError
from standin.lua import RECORD_FIELDS
from standin.outcome import Outcome, Proposal
from standin.redis_durable import DurableScript
from standin.redis_io import RedisGate
from standin.rules import Assessment
from standin.types import LimitKind, ReversalStatus, StandInRequest

__all__ = ["AbsorbResult", "RedisCounters", "ReversalKey", "UnadvisedCounter", "spend_member"]

_MS = timedelta(milliseconds=1)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def spend_member(decision_id: str, amount_minor: int) -> str:
    """The sorted-set member of one approval (see lua.py for the scheme)."""
    return f"{decision_id}:{amount_minor}"


@dataclass(frozen=True, slots=True)
class ReversalKey:
    """What the Redis side of a reversal needs (no PAN: the card is its token)."""

    acquirer_id: str
    reversal_id: str
    original_request_id: str
    final_amount_minor: int
    original_amount_minor: int = 0  # the amount it reverses; another record's amount: not its original


@dataclass(frozen=True, slots=True)
class AbsorbResult:
    """What ABSORB made of a local decision (lua.py): advise it, or advise `kept` instead."""

    status: str  # absorbed | same | reused | replaced | superseded | again
    kept: Outcome | None = None  # superseded, again: the request's recorded decision, which wins
    # for replaced: when the issuer must take this decision as told (its own answered_at, or just
    # after the record of a DECIDE whose reply was lost, when that script ran later)
    answered_ms: int | None = None

    @property
    def advise_local(self) -> bool:
        return self.status not in ("superseded", "again")


class RedisCounters:
    """Decides against the fleet's counters and records the outcome per request."""

    def __init__(
        self,
        gate: RedisGate,
        *,
        window: timedelta,
        idempotency_ttl: timedelta,
        reversal_hold: timedelta = timedelta(hours=1),
    ) -> None:
        self._gate = gate
        self._window_ms = int(window / _MS)
        self._idem_ttl_ms = int(idempotency_ttl / _MS)
        self._hold_ms = int(reversal_hold / _MS)
        self._decide: DurableScript = gate.script(lua.DECIDE)
        self._absorb: DurableScript = gate.script(lua.ABSORB)
        self._reverse: DurableScript = gate.script(lua.REVERSE)
        self._unadvised_add: DurableScript = gate.script(lua.UNADVISED_ADD)

    async def count_unadvised(self, token: str) -> None:
        """One more entry of the card's to acknowledge (raises StoreUnavailableError)."""

        async def op() -> int:
            reply: int = await self._unadvised_add(keys=[keys.unadvised_key(token)], args=[self._idem_ttl_ms])
            return reply

        await self._gate.call("unadvised add", op)

    async def digest_of(self, token: str, acquirer_id: str, request_id: str) -> str | None:
        """The content digest of this request's stand-in record, None without one (raises
        StoreUnavailableError)."""
        key = keys.idempotency_key(token, acquirer_id, request_id)

        async def op() -> list[bytes | str | None]:
            reply: list[bytes | str | None] = await self._gate.redis.hmget(key, ["digest"])
            return reply

        [digest] = await self._gate.call("record digest", op)
        return digest.decode() if isinstance(digest, bytes) else digest

    async def decide(
        self,
        token: str,
        request: StandInRequest,
        digest: str,
        assessment: Assessment,
        proposal: Proposal,
        *,
        again: bool = False,
    ) -> Outcome:
        """Run the decision script (`again`: a replay will be journaled again, see lua.DECIDE).

        Raises ReusedRequestIdError (the id was decided for other content) or StoreUnavailableError.
        """
        decline = assessment.decline
        known_limit, known_decline = assessment.for_known_balance()
        script_keys = [
            keys.idempotency_key(token, request.acquirer_id, request.request_id),
            keys.card_status_key(token),
            keys.spend_key(token, assessment.kind),
            keys.reversal_hold_key(token, request.acquirer_id, request.request_id),
            keys.unadvised_key(token),
            keys.balance_key(token),
        ]
        named: dict[str, str | int] = {
            "window_ms": self._window_ms,
            "amount": assessment.amount_minor,
            "max_amount": assessment.limit.max_amount_minor,
            "max_count": assessment.limit.max_count,
            "kind": assessment.kind.value,
            "static_rule": decline.rule if decline else "",
            "static_code": decline.code.value if decline else "",
            "decision_id": proposal.decision_id,
            "approval_code": proposal.approval_code,
            "risk_tier": proposal.risk_tier,
            "reason": proposal.reason.value,
            "gateway_instance": proposal.gateway_instance,
            "record_ttl_ms": self._idem_ttl_ms,
            "digest": digest,
            "txn_amount": request.amount_minor,
            "unadvised_ttl_ms": self._idem_ttl_ms,
            "advice_rule": assessment.advised,
            "policy_version": proposal.policy_version,
            "currency": request.currency,
            "again": "1" if again else "",
            "known_max_amount": known_limit.max_amount_minor,
            "known_max_count": known_limit.max_count,
            "known_static_rule": known_decline.rule if known_decline else "",
            "known_static_code": known_decline.code.value if known_decline else "",
        }
        args = [named[name] for name in lua.DECIDE_ARGS]

        async def op() -> list[int | bytes]:
            reply: list[int | bytes] = await self._decide(keys=script_keys, args=args)
            return reply

        status, *values = await self._gate.call("decide", op)
        if status == 2:
            who = f"request {request.request_id!r} of acquirer {request.acquirer_id}"
            raise ReusedRequestIdError(f"{who} was decided for other content")
        texts = [_text(v) for v in values if isinstance(v, bytes | str)]
        version = texts.pop() if len(texts) > len(RECORD_FIELDS) else ""
        outcome = Outcome.from_record(status == 1, texts)
        return replace(outcome, policy_version=int(version)) if version else outcome

    async def absorb(
        self,
        token: str,
        *,
        acquirer_id: str,
        request_id: str,
        digest: str,
        kind: LimitKind,
        amount_minor: int,
        txn_amount_minor: int,
        outcome: Outcome,
        now_ms: int,
        lost_call: str = "",
    ) -> AbsorbResult:
        """Bring a locally made decision into the fleet state (see lua.ABSORB)."""
        member = spend_member(outcome.decision_id, amount_minor) if outcome.response_code.approved else ""
        script_keys = [
            keys.idempotency_key(token, acquirer_id, request_id),
            keys.spend_key(token, kind),
            keys.unadvised_key(token),
        ]
        args: list[str | int] = [
            outcome.decided_at_ms,
            now_ms - self._window_ms,
            self._window_ms,
            member,
            self._idem_ttl_ms,
            outcome.answered_ms,
            digest,
            amount_minor,
            kind.value,
            txn_amount_minor,
            self._idem_ttl_ms,
            *outcome.record_values(),
            lost_call,
        ]

        async def op() -> bytes | list[bytes]:
            reply: bytes | list[bytes] = await self._absorb(keys=script_keys, args=args)
            return reply

        reply = await self._gate.call("absorb", op)
        if isinstance(reply, list):
            status, *values = [_text(v) for v in reply]
            if status == "replaced":
                return AbsorbResult(status, answered_ms=int(values[0]))
            return AbsorbResult(status, Outcome.from_record(False, values))
        return AbsorbResult(_text(reply))

    async def reverse(
        self, token: str, reversal: ReversalKey, *, entry_id: str, store: bool
    ) -> tuple[ReversalStatus, str, bool, tuple[str, str] | None]:
        """Apply or record one reversal (see lua.REVERSE): (status, entry id, whether it was new,
        and for an applied one the approval's window member before and after, "" when gone)."""
        acquirer = reversal.acquirer_id
        script_keys = [
            keys.idempotency_key(token, acquirer, reversal.original_request_id),
            keys.reversal_key(token, acquirer, reversal.reversal_id),
            keys.reversal_hold_key(token, acquirer, reversal.original_request_id),
            keys.spend_key(token, LimitKind.PURCHASE),
            keys.spend_key(token, LimitKind.CASH),
            keys.unadvised_key(token),
        ]
        args: list[str | int] = [
            reversal.final_amount_minor,
            entry_id,
            self._hold_ms,
            self._idem_ttl_ms,
            self._idem_ttl_ms,
            "1" if store else "0",
            reversal.original_amount_minor,
        ]

        async def op() -> list[bytes]:
            reply: list[bytes] = await self._reverse(keys=script_keys, args=args)
            return reply

        reply = [_text(v) for v in await self._gate.call("reverse", op)]
        if reply[0] == "repeat":
            return ReversalStatus(reply[1]), reply[2], False, None
        released = (reply[2], reply[3]) if len(reply) == 4 and reply[2] else None
        return ReversalStatus(reply[0]), reply[1], True, released


class UnadvisedCounter:
    """The issuer acknowledged (or settlement gave up on) one of a card's journal entries (lua.py)."""

    def __init__(self, gate: RedisGate) -> None:
        self._gate = gate
        self._script: AsyncScript = gate.redis.register_script(lua.UNADVISED_DONE)

    async def done(self, token: str) -> None:
        async def op() -> int:
            reply: int = await self._script(keys=[keys.unadvised_key(token)], args=[])
            return reply

        await self._gate.call("unadvised done", op)
