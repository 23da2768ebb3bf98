"""The issuer simulator's books as IssuerSimControl/Books sends them, and the postings check.

`book_messages` turns one `chaos.book.RequestRecord` into the `RequestBook`
messages the oracle (`chaos.verify`) reads, one per content (or one without
content for reversals held for a request that never arrived). `PostingTally`
adds up, per card, what the streamed books hold; against the ledger's card
debits it gives the postings no book explains (a ledger that debited a card
outside the rules of `chaos.book`, or forgot to release).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from authgw.v1 import authorization_pb2 as apb
from authgw.v1 import simulator_pb2
from chaos.book import AdviceBooked, RequestRecord, ReversalBooked, ReversalState

__all__ = ["REVERSAL_STATUS", "PostingTally", "book_messages"]

REVERSAL_STATUS = {
    ReversalState.STORED: apb.STORED,
    ReversalState.APPLIED: apb.APPLIED,
    ReversalState.NO_EFFECT: apb.NO_EFFECT,
}


def _reversals(reversals: Iterable[ReversalBooked]) -> list[simulator_pb2.ReversalBooked]:
    return [
        simulator_pb2.ReversalBooked(
            reversal_id=r.reversal_id,
            final_amount_minor=r.final_amount_minor,
            status=REVERSAL_STATUS[r.status],
            received=r.received,
        )
        for r in reversals
    ]


def _advice(a: AdviceBooked) -> simulator_pb2.AdviceBooked:
    return simulator_pb2.AdviceBooked(
        decision_id=a.decision_id,
        approved=a.approved,
        amount_minor=a.amount_minor,
        answered_at_us=a.answered_at_us,
        origin=a.origin,  # type: ignore[arg-type]  # an AdviceOrigin value, kept as int in the record
        received=a.received,
        response_code=a.response_code,
    )


def book_messages(record: RequestRecord) -> list[simulator_pb2.RequestBook]:
    """One RequestBook per content of the record, each with the reversals that cap it (its own).

    Reversals of a content that has not arrived (all of them when none has) go on one more book
    with no digest: held, they reverse nothing yet.
    """
    if not record.books:
        return [
            simulator_pb2.RequestBook(
                acquirer_id=record.acquirer_id,
                request_id=record.request_id,
                reversals=_reversals(record.reversals),
            )
        ]
    messages = []
    for book in record.books.values():
        claimed = book.digest == record.claim
        messages.append(
            simulator_pb2.RequestBook(
                acquirer_id=record.acquirer_id,
                request_id=record.request_id,
                digest=book.digest,
                claimed=claimed,
                amount_minor=book.amount_minor,
                own=simulator_pb2.OwnAnswer(
                    arrived=bool(book.own_code),
                    response_code=book.own_code,
                    held_minor=book.own_held_minor,
                    forwarded_at_us=book.own_forwarded_us,
                ),
                advices=[_advice(a) for a in book.advices],
                reversals=_reversals(record.caps(book)),
                final_minor=book.held_minor,
                approval_advices=book.approval_advices,
            )
        )
    held = record.unmatched()
    if held:
        messages.append(
            simulator_pb2.RequestBook(
                acquirer_id=record.acquirer_id, request_id=record.request_id, reversals=_reversals(held)
            )
        )
    return messages


class PostingTally:
    """What the streamed books hold per card, to compare with the ledger's card debits."""

    def __init__(self) -> None:
        self._held: Counter[str] = Counter()

    def add(self, records: Iterable[RequestRecord]) -> None:
        for record in records:
            for book in record.books.values():
                self._held[book.card] += book.held_minor

    def unexplained(self, debits: Mapping[str, int]) -> simulator_pb2.UnexplainedPostings:
        """Cards whose debits differ from what their books hold, and the sum of the differences."""
        gaps = [abs(debits.get(card, 0) - self._held.get(card, 0)) for card in {*debits, *self._held}]
        gaps = [g for g in gaps if g]
        return simulator_pb2.UnexplainedPostings(cards=len(gaps), amount_minor=sum(gaps))
