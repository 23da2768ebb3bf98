"""What every issuer-simulator ledger speaks: the `Ledger` protocol, its records, its errors.

A ledger keeps what happened to cards after their opening state
(`chaos.card_profiles`): one `chaos.book.RequestRecord` per (acquirer_id,
request_id), with a book per content, moved only by the rules of
`chaos.book` (the issuer's side of the money invariant, stated there). Every
card's balance is its opening balance minus what its books hold, so a
debit that no book explains shows in `card_debits`. `chaos.memory_ledger`
and `chaos.redis_ledger` implement it.

Errors::

    LedgerError                 root of the ledger's errors
    └── LedgerUnavailable       the back-end cannot be reached in time (retry later)

    chaos.book.ContentConflict  (not a LedgerError: an answer) Authorize reused ids with other content
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from chaos.book import Book, HoldAttempt, RequestRecord, ReversalState

__all__ = [
    "AdviceEntry",
    "AdviceRecord",
    "HoldAttempt",
    "IssuerAnswer",
    "Ledger",
    "LedgerError",
    "LedgerSnapshot",
    "LedgerUnavailable",
    "ReversalEntry",
    "ReversalOutcome",
    "advice_records",
]


class LedgerError(Exception):
    """Root of the ledger's errors."""


class LedgerUnavailable(LedgerError):
    """The ledger back-end did not answer in time; nothing can be said about the call."""


@dataclass(frozen=True, slots=True)
class IssuerAnswer:
    """The issuer's answer to a request: the first one ever given, whichever host gave it."""

    response_code: str
    approval_code: str  # empty unless response_code is "00"
    decision_id: str
    pool: str
    member: str
    repeated: bool  # the request was already decided: this is the stored answer
    available_minor: int | None = None  # the card's available balance after it, when the ledger read it

    @classmethod
    def of(cls, book: Book, repeated: bool, available_minor: int | None = None) -> IssuerAnswer:
        """The answer a book's own decision gives."""
        return cls(
            book.own_code, book.approval_code, book.decision_id, book.pool, book.member, repeated,
            available_minor,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AdviceEntry:
    """An advised outcome to book against its request."""

    decision_id: str
    pan: str
    approved: bool
    amount_minor: int
    response_code: str
    request_id: str = ""
    acquirer_id: str = ""
    digest: str = ""
    answered_at_us: int = 0  # when the outcome was given to the acquirer; 0: not said
    origin: int = 0  # authgw.v1.AdviceOrigin


@dataclass(frozen=True, slots=True)
class ReversalEntry:
    """An acquirer's reversal of (acquirer_id, original_request_id) to final_amount_minor."""

    acquirer_id: str
    reversal_id: str
    original_request_id: str
    final_amount_minor: int
    original_amount_minor: int = 0  # the amount it reverses (ISO 8583 0400 field 4); 0 = not said


@dataclass(frozen=True, slots=True)
class ReversalOutcome:
    status: ReversalState  # as answered the first time
    duplicate: bool


@dataclass(slots=True)
class AdviceRecord:
    """What the ledger recorded of one decision_id."""

    decision_id: str
    received: int
    applied: bool  # an approval, booked (it may since have been replaced by a later advice)
    amount_minor: int
    response_code: str
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """Every request record and every card's debits, as of one instant (no posting in between)."""

    records: list[RequestRecord]
    debits: dict[str, int]  # card_debits()


def advice_records(records: Iterable[RequestRecord]) -> list[AdviceRecord]:
    """Every advice booked in `records`, in order of first arrival."""
    booked = [(a, r.request_id) for r in records for b in r.books.values() for a in b.advices]
    booked.sort(key=lambda pair: pair[0].seq)
    return [
        AdviceRecord(a.decision_id, a.received, a.approved, a.amount_minor, a.response_code, request_id)
        for a, request_id in booked
    ]


class Ledger(Protocol):
    """An issuer back-end: balances, one record per request, advices and reversals booked in it."""

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        """Decide and hold once per request; repeat the stored answer; ContentConflict for other content."""
        ...

    async def advise(self, advice: AdviceEntry) -> bool:
        """Book once per decision_id (see chaos.book); True when it was a duplicate."""
        ...

    async def reverse(self, reversal: ReversalEntry) -> ReversalOutcome:
        """Apply or hold once per (acquirer_id, reversal_id)."""
        ...

    def records(self, page_size: int) -> AsyncIterator[list[RequestRecord]]:
        """Every request record, in pages of at most page_size, oldest first."""
        ...

    async def card_debits(self) -> dict[str, int]:
        """What the ledger has debited each card it touched (opening minus balance), by card token."""
        ...

    async def snapshot(self) -> LedgerSnapshot:
        """records() and card_debits() as of one instant: what Books pages and checks.

        Read apart, a posting made between the pages and the debits (settlement runs meanwhile)
        would show as a card whose debits no book explains.
        """
        ...

    async def advices(self) -> list[AdviceRecord]:
        """Every advice recorded, in order of first arrival."""
        ...

    async def advice_order(self, pan: str) -> list[str]:
        """decision_ids of one card's advices in order of first arrival."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...
