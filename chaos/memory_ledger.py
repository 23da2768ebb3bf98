"""One simulator host's private ledger, in memory: the default back-end.

Idempotency and balances are then per host: another host of the same issuer
knows nothing of this one's holds and advices. `chaos.redis_ledger` is the
issuer-wide alternative.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from chaos.card_profiles import CardStatus, card_profile, card_token, decide
from chaos.ledger_protocol import AdviceEntry, AdviceRecord, HoldAttempt, IssuerAnswer

__all__ = ["MemoryLedger"]


@dataclass(slots=True)
class _Card:
    available_minor: int
    status: CardStatus


class MemoryLedger:
    """One host's private ledger; forgets the oldest request_ids past `max_requests`."""

    def __init__(self, *, max_requests: int = 1_000_000) -> None:
        self._max_requests = max_requests
        self._cards: dict[str, _Card] = {}
        self._requests: OrderedDict[tuple[str, str], IssuerAnswer] = OrderedDict()
        self._advices: dict[tuple[str, str], AdviceRecord] = {}
        self._order: dict[str, list[str]] = {}

    def _card(self, token: str, pan: str) -> _Card:
        card = self._cards.get(token)
        if card is None:
            profile = card_profile(pan)
            card = self._cards[token] = _Card(profile.balance_minor, profile.status)
        return card

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        token = card_token(attempt.pan)
        key = (token, attempt.request_id)
        known = self._requests.get(key)
        if known is not None:
            return IssuerAnswer(
                known.response_code, known.approval_code, known.decision_id, known.pool, known.member, True
            )
        card = self._card(token, attempt.pan)
        code = decide(card.status, card.available_minor, attempt.amount_minor)
        if code == "00":
            card.available_minor -= attempt.amount_minor
        answer = IssuerAnswer(
            code,
            attempt.approval_code if code == "00" else "",
            attempt.decision_id,
            attempt.pool,
            attempt.member,
            False,
        )
        self._requests[key] = answer
        if len(self._requests) > self._max_requests:
            self._requests.popitem(last=False)
        return answer

    async def advise(self, advice: AdviceEntry) -> bool:
        token = card_token(advice.pan)
        key = (token, advice.decision_id)
        record = self._advices.get(key)
        if record is not None:
            record.received += 1
            return True
        if advice.approved:
            # A stand-in approval is posted whatever the balance: the money has left already.
            self._card(token, advice.pan).available_minor -= advice.amount_minor
        self._advices[key] = AdviceRecord(
            advice.decision_id,
            1,
            advice.approved,
            advice.amount_minor,
            advice.response_code,
            advice.request_id,
        )
        self._order.setdefault(token, []).append(advice.decision_id)
        return False

    async def advices(self) -> list[AdviceRecord]:
        return [
            AdviceRecord(r.decision_id, r.received, r.applied, r.amount_minor, r.response_code, r.request_id)
            for r in self._advices.values()
        ]

    async def advice_order(self, pan: str) -> list[str]:
        return list(self._order.get(card_token(pan), []))

    async def close(self) -> None:
        return None
