"""The money oracle on acquirer advices (chaos.verify): A is the advised amount, posted exactly once.

Pure: hand-made samples (as chaos.acquirer records an advice) against hand-made issuer books.
"""

from __future__ import annotations

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import simulator_pb2 as spb
from chaos.reversals import SentReversal
from chaos.samples import Outcome, Sample
from chaos.verify import Figure, Why, classify, compare, held

AMOUNT = 1_000


def advice_sample(*, acked: bool = True, reversal_final: int | None = None) -> Sample:
    """Request r1 of acquirer 1001 sent as a forced post, acknowledged (or never) by a gateway."""
    s = Sample("r1", 0.0, amount_minor=AMOUNT, acquirer_id="1001", digest="d1", advice="FORCED_POST")
    if acked:
        s.record_advice(pb.AdviceAck(decision_id="dec-1"), 0.1)
    else:
        s.last_outcome = Outcome.NO_ANSWER
    if reversal_final is not None:
        s.reversals.append(SentReversal("rev-1", reversal_final, "CARDHOLDER_CANCEL", acked=True))
    return s


def book(final: int, *origins: int, reversal_final: int | None = None) -> spb.RequestBook:
    """The issuer's book of r1 with one approval advice of AMOUNT per origin."""
    reversals = (
        []
        if reversal_final is None
        else [spb.ReversalBooked(reversal_id="rev-1", final_amount_minor=reversal_final)]
    )
    return spb.RequestBook(
        acquirer_id="1001", request_id="r1", digest="d1", claimed=True, amount_minor=AMOUNT,
        advices=[
            spb.AdviceBooked(decision_id=f"dec-{i}", approved=True, amount_minor=AMOUNT, origin=o, received=1)
            for i, o in enumerate(origins, 1)
        ],
        reversals=reversals, final_minor=final, approval_advices=len(origins),
    )  # fmt: skip


def test_an_advice_is_held_at_its_amount_even_unanswered() -> None:
    """The money is spent whatever the gateway said: A = the amount, acknowledged or not."""
    assert (held(advice_sample()).amount_minor, held(advice_sample()).why) == (AMOUNT, Why.ADVISED)
    assert held(advice_sample(acked=False)).amount_minor == AMOUNT


def test_an_advice_posted_once_is_in_no_figure_and_counted_posted() -> None:
    """One approval advice of origin ACQUIRER_FORCED_POST holding the amount: clean, posted."""
    s, b = advice_sample(), book(AMOUNT, pb.ACQUIRER_FORCED_POST)
    assert classify(held(s), b) is None
    check = compare([s], [b])
    assert (check.advices, check.advices_acked, check.advices_posted, check.journaled) == (1, 1, 1, 1)


def test_an_advice_the_issuer_never_got_is_missing() -> None:
    """Acknowledged but never posted: missing (and not counted posted)."""
    check = compare([advice_sample()], [])
    assert (check.missing, check.advices_posted) == (1, 0)


def test_an_advice_posted_twice_is_double_posted() -> None:
    """Two approval advices for the request (two decision ids): double_posted."""
    assert classify(held(advice_sample()), book(AMOUNT, pb.ACQUIRER_OFFLINE, pb.ACQUIRER_OFFLINE)) is (
        Figure.DOUBLE_POSTED
    )


def test_an_advice_posted_as_a_stand_in_decision_is_not_counted_posted() -> None:
    """The right amount but origin STAND_IN_DECISION: no figure (the money matches) but not posted as
    an acquirer advice."""
    check = compare([advice_sample()], [book(AMOUNT, pb.STAND_IN_DECISION)])
    assert check.ok and check.advices_posted == 0


def test_a_reversed_advice_is_held_at_its_final_amount() -> None:
    """An advice partially reversed to 400: A = 400; a book still at the full amount is a mismatch."""
    s = advice_sample(reversal_final=400)
    assert classify(held(s), book(400, pb.ACQUIRER_FORCED_POST, reversal_final=400)) is None
    assert classify(held(s), book(AMOUNT, pb.ACQUIRER_FORCED_POST)) is Figure.REVERSALS_NOT_APPLIED
