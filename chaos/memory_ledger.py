"""One simulator host's private ledger, in memory: the default back-end.

Idempotency and balances are then per host: another host of the same issuer
knows nothing of this one's records. `chaos.redis_ledger` is the issuer-wide
alternative. The rules are `chaos.book`'s; each operation runs without an
await between reading and writing, so it is atomic on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from chaos.book import AdviceBooked, Posting, RequestRecord
from chaos.card_profiles import CardStatus, card_profile, card_token, decide
from chaos.ledger_protocol import (
    AdviceEntry,
    AdviceRecord,
    HoldAttempt,
    IssuerAnswer,
    LedgerSnapshot,
    ReversalEntry,
    ReversalOutcome,
    advice_records,
)

__all__ = ["MemoryLedger"]


@dataclass(slots=True)
class _Card:
    opening_minor: int
    status: CardStatus
    debited_minor: int = 0  # what the books of this card hold, as posted
    forgotten_minor: int = 0  # what the books forgotten past max_requests still held

    @property
    def available_minor(self) -> int:
        return self.opening_minor - self.debited_minor


class MemoryLedger:
    """One host's private ledger; forgets the oldest requests past `max_requests`."""

    def __init__(self, *, max_requests: int = 1_000_000) -> None:
        self._max_requests = max_requests
        self._cards: dict[str, _Card] = {}
        self._records: OrderedDict[tuple[str, str], RequestRecord] = OrderedDict()
        self._order: dict[str, list[str]] = {}
        self._advice_owner: dict[str, tuple[str, str]] = {}  # decision_id -> the record that booked it
        self._seq = 0

    def _card(self, token: str, pan: str) -> _Card:
        card = self._cards.get(token)
        if card is None:
            profile = card_profile(pan)
            card = self._cards[token] = _Card(profile.balance_minor, profile.status)
        return card

    def _record(self, acquirer_id: str, request_id: str) -> RequestRecord:
        key = (acquirer_id, request_id)
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = RequestRecord(acquirer_id, request_id)
            if len(self._records) > self._max_requests:
                self._forget_oldest()
        return record

    def _forget_oldest(self) -> None:
        _, old = self._records.popitem(last=False)
        for book in old.books.values():
            self._cards[book.card].forgotten_minor += book.held_minor

    def _post(self, posting: Posting) -> None:
        if posting.delta_minor:
            self._cards[posting.card].debited_minor += posting.delta_minor

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        token = card_token(attempt.pan)
        card = self._card(token, attempt.pan)
        record = self._record(attempt.acquirer_id, attempt.request_id)
        book, repeated, posting = record.authorize(
            attempt, token, lambda: decide(card.status, card.available_minor, attempt.amount_minor)
        )
        self._post(posting)
        return IssuerAnswer.of(book, repeated, card.available_minor)

    async def advise(self, advice: AdviceEntry) -> bool:
        token = card_token(advice.pan)
        self._card(token, advice.pan)
        # Idempotent by decision_id alone: a redelivery carrying another request is still a duplicate.
        owner = self._advice_owner.get(advice.decision_id, (advice.acquirer_id, advice.request_id))
        record = self._record(*owner)
        self._seq += 1
        booked = AdviceBooked(
            advice.decision_id, advice.approved, advice.amount_minor, advice.answered_at_us,
            advice.origin, advice.response_code, self._seq,
        )  # fmt: skip
        duplicate, posting = record.advise(advice.digest, token, advice.amount_minor, booked)
        if not duplicate:
            self._advice_owner[advice.decision_id] = owner
            self._order.setdefault(token, []).append(advice.decision_id)
        self._post(posting)
        return duplicate

    async def reverse(self, reversal: ReversalEntry) -> ReversalOutcome:
        record = self._record(reversal.acquirer_id, reversal.original_request_id)
        status, duplicate, posting = record.reverse(
            reversal.reversal_id, reversal.final_amount_minor, reversal.original_amount_minor
        )
        self._post(posting)
        return ReversalOutcome(status, duplicate)

    async def records(self, page_size: int) -> AsyncIterator[list[RequestRecord]]:
        snapshot = list(self._records.values())
        for start in range(0, len(snapshot), page_size):
            yield snapshot[start : start + page_size]

    async def card_debits(self) -> dict[str, int]:
        return {token: c.debited_minor - c.forgotten_minor for token, c in self._cards.items()}

    async def snapshot(self) -> LedgerSnapshot:
        # Copies, taken without yielding to the loop: records change in place afterwards.
        records = [RequestRecord.from_doc(r.to_doc()) for r in self._records.values()]
        return LedgerSnapshot(records, await self.card_debits())

    async def advices(self) -> list[AdviceRecord]:
        return advice_records(self._records.values())

    async def advice_order(self, pan: str) -> list[str]:
        return list(self._order.get(card_token(pan), []))

    async def close(self) -> None:
        return None
