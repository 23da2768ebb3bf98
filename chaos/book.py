"""The issuer's book of one request, and the rules that move it: Authorize, Advise, Reverse.

The money invariant (DESIGN.md): for every request an acquirer sent, the
issuer's book ends at what the acquirer finally holds the card to, posted
once; at most one approval per request is ever advised. This module is the
issuer's side of it, as the simulator keeps it:

- A request is (acquirer_id, request_id) plus its content digest
  (`chaos.request_key`). One `RequestRecord` per (acquirer_id, request_id)
  keeps a `Book` per content received. The first content to arrive (by
  Authorize or by advice) is the record's claim; an Authorize with other
  content is refused (`ContentConflict`, ALREADY_EXISTS on the wire), an
  advice with other content gets a book of its own (a different request).
- What a book holds: the outcome of its latest advice (by answered_at, then
  arrival), approved -> the advice's amount, declined -> 0, replacing the
  issuer's own hold; with no advice, or when the issuer's own answer went to
  an Authorize forwarded (AuthorizeRequest.forwarded_at) after that advice's
  answered_at (a repeat the issuer answered after stand-in decided: the
  acquirer's last answer), the issuer's own hold (its approval's amount).
  Every reversal of the record then caps the book it reverses:
  min(amount, final_amount_minor). It reverses the book whose amount is its
  original amount (ISO 8583 0400 field 4, as an issuer matches the original's
  data elements), or the claimed book when it names none: a reversal of one
  content never releases another content under the same ids (a reused id). A
  reversal whose original is unknown is held (STORED) and caps what arrives
  later for it; an Authorize of such a content is declined 05 and holds nothing.
- Idempotency: an Authorize repeating a decided content gets the stored
  answer; a decision_id (reversal_id) already in the record is a redelivery
  with no new effect, but for an advice carrying a later answered_at, which
  moves the booked advice's (the same decision given again by the gateway).

Every rule returns the `Posting` it makes (the change of the book's amount on
its card), so the ledger keeps each card's balance equal to its opening
balance minus its books. Both ledgers apply these functions: `MemoryLedger`
on its dictionaries, `RedisLedger` between a read and a compare-and-set commit.

Errors::

    ContentConflict     an Authorize reused (acquirer_id, request_id) with other content
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

__all__ = [
    "AdviceBooked",
    "AdviceOutcome",
    "Book",
    "ContentConflict",
    "HoldAttempt",
    "Posting",
    "RequestRecord",
    "ReversalBooked",
    "ReversalState",
    "book_amount",
    "own_or_advice",
]

DECLINE_REVERSED_FIRST = "05"  # do not honour: the acquirer reversed this request before it arrived


class ContentConflict(Exception):
    """An Authorize reused (acquirer_id, request_id) with other content than the issuer knows."""


class ReversalState(StrEnum):
    """How a reversal was answered the first time (authgw.v1.ReversalStatus)."""

    STORED = "STORED"  # the original is unknown: held, applied to whatever arrives for it
    APPLIED = "APPLIED"
    NO_EFFECT = "NO_EFFECT"  # declined, or already at this amount or lower


@dataclass(frozen=True, slots=True)
class HoldAttempt:
    """An authorization to decide; decision_id and approval_code are used only if the request is new."""

    request_id: str
    pan: str
    amount_minor: int
    decision_id: str
    approval_code: str
    pool: str
    member: str
    acquirer_id: str = ""
    digest: str = ""  # chaos.request_key.content_digest of the request
    forwarded_at_us: int = 0  # AuthorizeRequest.forwarded_at (0: not carried)


class Posting(NamedTuple):
    """A change of what the issuer holds on one card: positive debits it, negative releases."""

    card: str
    delta_minor: int


NO_POSTING = Posting("", 0)


@dataclass(slots=True)
class AdviceBooked:
    decision_id: str
    approved: bool
    amount_minor: int
    answered_at_us: int  # 0 when the advice carries no answered_at
    origin: int  # authgw.v1.AdviceOrigin
    response_code: str
    seq: int  # arrival order, issuer-wide: breaks ties of answered_at in favour of the later arrival
    received: int = 1


@dataclass(slots=True)
class ReversalBooked:
    reversal_id: str
    final_amount_minor: int
    status: ReversalState
    received: int = 1
    original_amount_minor: int = 0  # the amount of the content it reverses; 0: the claimed content

    def reverses(self, book: Book, claim: str) -> bool:
        """Whether this reversal is of `book` (its original amount, else the claimed content)."""
        if self.original_amount_minor:
            return self.original_amount_minor == book.amount_minor
        return book.digest == claim


@dataclass(slots=True)
class Book:
    """One content of one request: the issuer's own answer, the advices, what it holds."""

    digest: str
    card: str  # the card's token (chaos.card_profiles.card_token), never the PAN
    amount_minor: int
    own_code: str = ""  # the issuer's answer to Authorize; "" while none arrived
    own_held_minor: int = 0  # what that answer held: the amount when approved, else 0
    own_forwarded_us: int = 0  # latest forwarded_at of the Authorizes answered with it (0: none)
    approval_code: str = ""
    decision_id: str = ""
    pool: str = ""
    member: str = ""
    advices: list[AdviceBooked] = field(default_factory=list)
    held_minor: int = 0  # what the issuer holds for this book now (kept so changes are postings)

    @property
    def approval_advices(self) -> int:
        return sum(1 for a in self.advices if a.approved)


class AdviceOutcome(Protocol):
    """What decides a book in an advice: AdviceBooked here, simulator_pb2.AdviceBooked in a report."""

    @property
    def answered_at_us(self) -> int: ...
    @property
    def approved(self) -> bool: ...
    @property
    def amount_minor(self) -> int: ...


def own_or_advice(own_held_minor: int, own_forwarded_us: int, latest: AdviceOutcome | None) -> int:
    """The base of a book: its latest advice's outcome, unless the own answer went out after it."""
    if latest is None or own_forwarded_us > latest.answered_at_us:
        return own_held_minor
    return latest.amount_minor if latest.approved else 0


def book_amount(book: Book, reversals: Sequence[ReversalBooked]) -> int:
    """What the book holds (`own_or_advice`), capped by `reversals`."""
    latest = max(book.advices, key=lambda a: (a.answered_at_us, a.seq)) if book.advices else None
    base = own_or_advice(book.own_held_minor, book.own_forwarded_us, latest)
    return min([base, *(r.final_amount_minor for r in reversals)])


@dataclass(slots=True)
class RequestRecord:
    """Everything the issuer knows of one (acquirer_id, request_id)."""

    acquirer_id: str
    request_id: str
    claim: str = ""  # digest of the content these ids stand for; "" while none arrived
    books: dict[str, Book] = field(default_factory=dict)
    reversals: list[ReversalBooked] = field(default_factory=list)

    def caps(self, book: Book) -> Sequence[ReversalBooked]:
        """The reversals that apply to `book` (ReversalBooked.reverses)."""
        return [r for r in self.reversals if r.reverses(book, self.claim)]

    def unmatched(self) -> Sequence[ReversalBooked]:
        """The reversals held for a content that has not arrived (no book they reverse)."""
        return [r for r in self.reversals if not any(r.reverses(b, self.claim) for b in self.books.values())]

    def _settle(self, book: Book) -> Posting:
        held = book_amount(book, self.caps(book))
        posting = Posting(book.card, held - book.held_minor)
        book.held_minor = held
        return posting

    def _book(self, digest: str, card: str, amount_minor: int) -> Book:
        book = self.books.get(digest)
        if book is None:
            book = self.books[digest] = Book(digest, card, amount_minor)
        if not self.claim:
            self.claim = digest
        return book

    def authorize(
        self, attempt: HoldAttempt, card: str, decide: Callable[[], str]
    ) -> tuple[Book, bool, Posting]:
        """The issuer's own answer: (book, repeated, posting); `decide` gives the code of a new one."""
        if self.claim and self.claim != attempt.digest:
            raise ContentConflict(f"{self.acquirer_id}/{self.request_id} is known with other content")
        book = self._book(attempt.digest, card, attempt.amount_minor)
        if book.own_code:
            if attempt.forwarded_at_us <= book.own_forwarded_us:
                return book, True, NO_POSTING
            book.own_forwarded_us = attempt.forwarded_at_us  # the stored answer goes out again, later
            return book, True, self._settle(book)
        book.own_forwarded_us = attempt.forwarded_at_us
        # Reversals of it present before its first Authorize: it was reversed before it arrived.
        book.own_code = DECLINE_REVERSED_FIRST if self.caps(book) else decide()
        approved = book.own_code == "00"
        book.own_held_minor = attempt.amount_minor if approved else 0
        book.approval_code = attempt.approval_code if approved else ""
        book.decision_id, book.pool, book.member = attempt.decision_id, attempt.pool, attempt.member
        return book, False, self._settle(book)

    def advise(self, digest: str, card: str, amount_minor: int, advice: AdviceBooked) -> tuple[bool, Posting]:
        """Apply an advice to its content's book: (duplicate, posting).

        A decision_id already booked is a duplicate; one carrying a later answered_at moves the
        booked advice's (the gateway gave that decision again, after an attempt it may have
        forwarded meanwhile): the book may end with it again rather than the issuer's own answer."""
        for known in self.books.values():
            for booked in known.advices:
                if booked.decision_id == advice.decision_id:
                    booked.received += 1
                    if advice.answered_at_us <= booked.answered_at_us:
                        return True, NO_POSTING
                    booked.answered_at_us, booked.seq = advice.answered_at_us, advice.seq
                    return True, self._settle(known)
        book = self._book(digest, card, amount_minor)
        book.advices.append(advice)
        return False, self._settle(book)

    def reverse(
        self, reversal_id: str, final_amount_minor: int, original_amount_minor: int = 0
    ) -> tuple[ReversalState, bool, Posting]:
        """Apply (or hold) a reversal: (status as first answered, duplicate, posting)."""
        for known in self.reversals:
            if known.reversal_id == reversal_id:
                known.received += 1
                return known.status, True, NO_POSTING
        reversal = ReversalBooked(
            reversal_id,
            final_amount_minor,
            ReversalState.NO_EFFECT,
            original_amount_minor=original_amount_minor,
        )
        book = next((b for b in self.books.values() if reversal.reverses(b, self.claim)), None)
        self.reversals.append(reversal)
        if book is None:
            reversal.status = ReversalState.STORED
            return ReversalState.STORED, False, NO_POSTING
        before = book.held_minor
        posting = self._settle(book)
        if book.held_minor < before:
            reversal.status = ReversalState.APPLIED
        return reversal.status, False, posting

    # -- storage (RedisLedger keeps a record as one JSON document) ---------------------------------

    def to_doc(self) -> dict[str, Any]:
        return {
            "acquirer_id": self.acquirer_id,
            "request_id": self.request_id,
            "claim": self.claim,
            "books": [_book_doc(b) for b in self.books.values()],
            "reversals": [
                [r.reversal_id, r.final_amount_minor, r.status.value, r.received, r.original_amount_minor]
                for r in self.reversals
            ],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RequestRecord:
        books = [_book_from_doc(b) for b in doc["books"]]
        return cls(
            doc["acquirer_id"],
            doc["request_id"],
            doc["claim"],
            {b.digest: b for b in books},
            [ReversalBooked(r[0], r[1], ReversalState(r[2]), *r[3:]) for r in doc["reversals"]],
        )


_BOOK_SCALARS = (
    "digest", "card", "amount_minor", "own_code", "own_held_minor", "approval_code", "decision_id",
    "pool", "member", "held_minor", "own_forwarded_us",
)  # fmt: skip
_ADVICE_FIELDS = (
    "decision_id", "approved", "amount_minor", "answered_at_us", "origin", "response_code", "seq", "received",
)  # fmt: skip


def _book_doc(book: Book) -> dict[str, Any]:
    doc: dict[str, Any] = {name: getattr(book, name) for name in _BOOK_SCALARS}
    doc["advices"] = [[getattr(a, name) for name in _ADVICE_FIELDS] for a in book.advices]
    return doc


def _book_from_doc(doc: dict[str, Any]) -> Book:
    book = Book(**{name: doc[name] for name in _BOOK_SCALARS})
    book.advices = [AdviceBooked(*row) for row in doc["advices"]]
    return book
