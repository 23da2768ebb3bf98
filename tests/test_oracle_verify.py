"""The money oracle's comparison (chaos.verify) on hand-made requests and books: pure, no process.

Each figure gets a case that must raise it and one, as close as possible,
that must not. Requests are `Sample`s as the load generator records them;
books are `RequestBook`s as the simulator streams them.
"""

from __future__ import annotations

import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import simulator_pb2 as spb
from chaos.experiment import SETTLED, money_criteria
from chaos.reversals import SentReversal
from chaos.samples import Answer, Outcome, Sample
from chaos.verify import Figure, Held, MoneyCheck, Why, classify, compare, held, story

AMOUNT = 1_000


def sample(
    *answers: Answer, last: str = Outcome.ANSWERED, reversals: tuple[SentReversal, ...] = ()
) -> Sample:
    """Request r1 of acquirer 1001 for AMOUNT, with its answers (the last one wins) and reversals."""
    s = Sample("r1", 0.0, amount_minor=AMOUNT, acquirer_id="1001", digest="d1", last_outcome=last)
    s.answers.extend(answers)
    s.reversals.extend(reversals)
    if last == Outcome.REFUSED:
        s.refusals.append("ALREADY_EXISTS")
    return s


def approved(source: str = "ISSUER", decision_id: str = "dec-1") -> Answer:
    return Answer("00", True, source, decision_id)


def declined(source: str = "ISSUER", code: str = "05", decision_id: str = "dec-2") -> Answer:
    return Answer(code, False, source, decision_id)


def sent(
    final: int, *, acked: bool = True, timeout: bool = False, reversal_id: str = "rev-1"
) -> SentReversal:
    reason = "TERMINAL_TIMEOUT" if timeout else "CARDHOLDER_CANCEL"
    return SentReversal(reversal_id, final, reason, acked=acked, status="APPLIED" if acked else "")


def book(
    final: int,
    *,
    own: int = 0,
    advices: tuple[tuple[bool, int], ...] = (),
    reversals: tuple[int, ...] = (),
    request_id: str = "r1",
    digest: str = "d1",
) -> spb.RequestBook:
    """The issuer's book of r1: its own hold, (approved, amount) advices in arrival order, reversals."""
    return spb.RequestBook(
        acquirer_id="1001",
        request_id=request_id,
        digest=digest,
        claimed=True,
        amount_minor=AMOUNT,
        own=spb.OwnAnswer(arrived=own > 0, response_code="00" if own else "", held_minor=own),
        advices=[
            spb.AdviceBooked(decision_id=f"adv-{i}", approved=ok, amount_minor=amount, received=1)
            for i, (ok, amount) in enumerate(advices)
        ],
        reversals=[
            spb.ReversalBooked(reversal_id=f"rev-{i}", final_amount_minor=f, status=pb.APPLIED)
            for i, f in enumerate(reversals, 1)
        ],
        final_minor=final,
        approval_advices=sum(1 for ok, _ in advices if ok),
    )


def figure_of(s: Sample, b: spb.RequestBook | None) -> Figure | None:
    return classify(held(s), b)


# --- what the acquirer holds ----------------------------------------------------------------------


def test_held_is_the_last_answer_capped_by_every_reversal() -> None:
    """A follows the last answer (approved then declined: 0; declined then approved: the amount), capped."""
    assert held(sample(approved(), declined())).amount_minor == 0
    assert held(sample(declined(), approved())) == Held(held(sample()).key, AMOUNT, Why.APPROVED)
    assert held(sample(approved(), reversals=(sent(300, acked=False),))).amount_minor == 300
    assert held(sample(approved(), reversals=(sent(300), sent(700, reversal_id="rev-2")))).amount_minor == 300


def test_held_is_zero_without_an_answer_or_after_a_refusal() -> None:
    """No answer (even after an earlier approval) and a refusal both hold nothing."""
    timed_out = held(sample(approved(), last=Outcome.NO_ANSWER, reversals=(sent(0, timeout=True),)))
    assert (timed_out.amount_minor, timed_out.why) == (0, Why.NO_ANSWER)
    refused = held(sample(last=Outcome.REFUSED))
    assert (refused.amount_minor, refused.why) == (0, Why.REFUSED)
    assert held(sample(declined(source="STAND_IN"))).why is Why.STANDIN_DECLINED


# --- one figure each: a case that raises it, one that must not ------------------------------------


def test_missing() -> None:
    """An approval the issuer holds nothing for is missing; held at its amount, it is not."""
    assert figure_of(sample(approved(source="STAND_IN")), None) is Figure.MISSING
    assert (
        figure_of(sample(approved(source="STAND_IN")), book(0, advices=((False, AMOUNT),))) is Figure.MISSING
    )
    assert figure_of(sample(approved(source="STAND_IN")), book(AMOUNT, advices=((True, AMOUNT),))) is None


def test_double_posted() -> None:
    """Two approval advices, or own approval plus an advice not merged, are double posted; merged, not."""
    two = book(AMOUNT, advices=((True, AMOUNT), (True, AMOUNT)))
    assert figure_of(sample(approved()), two) is Figure.DOUBLE_POSTED
    unmerged = book(2 * AMOUNT, own=AMOUNT, advices=((True, AMOUNT),))
    assert figure_of(sample(approved()), unmerged) is Figure.DOUBLE_POSTED
    merged = book(AMOUNT, own=AMOUNT, advices=((True, AMOUNT),))
    assert figure_of(sample(approved()), merged) is None


def test_double_posted_counts_postings_no_request_explains() -> None:
    """A book holding money for no request of the run, and cards off their books, add to double_posted."""
    s = sample(approved())
    stray = book(500, own=500, request_id="never-sent")
    misfiled = book(0, advices=((False, AMOUNT),))
    misfiled.acquirer_id = ""  # r1's content under no acquirer: a hint, no money
    books = [book(AMOUNT, own=AMOUNT), stray, misfiled]
    check = compare([s], books, spb.UnexplainedPostings(cards=2, amount_minor=9))
    assert (check.double_posted, check.unexplained_postings, check.misfiled_books) == (3, 3, 1)
    released = book(0, own=500, advices=((False, 500),), request_id="never-sent")
    clean = compare([s], [book(AMOUNT, own=AMOUNT), released], spb.UnexplainedPostings())
    assert (clean.double_posted, clean.ok) == (0, True)


def test_declines_debited() -> None:
    """A decline or a refusal the issuer holds money for is a debited decline; holding nothing, it is not."""
    assert figure_of(sample(declined()), book(AMOUNT, own=AMOUNT)) is Figure.DECLINES_DEBITED
    assert figure_of(sample(last=Outcome.REFUSED), book(AMOUNT, own=AMOUNT)) is Figure.DECLINES_DEBITED
    standin_declined = sample(declined(source="STAND_IN"))
    assert figure_of(standin_declined, book(AMOUNT, advices=((True, AMOUNT),))) is Figure.DECLINES_DEBITED
    assert figure_of(sample(declined()), book(0)) is None


def test_holds_not_released() -> None:
    """No answer, or a stand-in decline, while the issuer's own hold stays: not released; released, fine."""
    timed_out = sample(last=Outcome.NO_ANSWER, reversals=(sent(0, timeout=True),))
    assert figure_of(timed_out, book(AMOUNT, own=AMOUNT)) is Figure.HOLDS_NOT_RELEASED
    assert figure_of(timed_out, book(0, own=AMOUNT, reversals=(0,))) is None
    standin_declined = sample(declined(source="STAND_IN", code="91"))
    assert figure_of(standin_declined, book(AMOUNT, own=AMOUNT)) is Figure.HOLDS_NOT_RELEASED
    assert figure_of(standin_declined, book(0, own=AMOUNT, advices=((False, AMOUNT),))) is None


def test_reversals_not_applied() -> None:
    """An acknowledged reversal to 300 while the issuer holds more is not applied; at 300, it is."""
    reversed_ = sample(approved(), reversals=(sent(300),))
    assert figure_of(reversed_, book(AMOUNT, own=AMOUNT)) is Figure.REVERSALS_NOT_APPLIED
    assert figure_of(reversed_, book(300, own=AMOUNT, reversals=(300,))) is None
    fully = sample(approved(), reversals=(sent(0),))
    assert figure_of(fully, book(AMOUNT, own=AMOUNT)) is Figure.REVERSALS_NOT_APPLIED


def test_amount_mismatches() -> None:
    """Any other difference (an unacknowledged reversal, a different amount) is a mismatch; equal is not."""
    assert figure_of(sample(approved()), book(800, own=800)) is Figure.AMOUNT_MISMATCHES
    unacked = sample(approved(), reversals=(sent(300, acked=False),))
    assert figure_of(unacked, book(AMOUNT, own=AMOUNT)) is Figure.AMOUNT_MISMATCHES
    assert figure_of(sample(approved()), book(AMOUNT, own=AMOUNT)) is None


# --- the whole comparison -------------------------------------------------------------------------


@pytest.mark.parametrize("figure", list(Figure))
def test_compare_counts_each_figure_once_per_request(figure: Figure) -> None:
    """compare() puts one failing request in exactly its figure and keeps it as an example."""
    cases = {
        Figure.MISSING: (sample(approved()), None),
        Figure.DOUBLE_POSTED: (sample(approved()), book(AMOUNT, advices=((True, AMOUNT), (True, AMOUNT)))),
        Figure.DECLINES_DEBITED: (sample(declined()), book(AMOUNT, own=AMOUNT)),
        Figure.HOLDS_NOT_RELEASED: (sample(last=Outcome.NO_ANSWER), book(AMOUNT, own=AMOUNT)),
        Figure.REVERSALS_NOT_APPLIED: (sample(approved(), reversals=(sent(0),)), book(AMOUNT, own=AMOUNT)),
        Figure.AMOUNT_MISMATCHES: (sample(approved()), book(1, own=1)),
    }
    s, b = cases[figure]
    check = compare([s], [b] if b is not None else [])
    assert {k: v for k, v in check.figures().items() if v} == {figure.value: 1}
    assert check.examples == {figure.value: [f"1001/r1#d1: {story(s, b)}"]}
    assert not check.ok


def test_a_failing_example_tells_both_sides_of_its_request() -> None:
    """A failing figure's example says what the acquirer heard and reversed and what the issuer
    booked: enough to start on the cause from the report alone."""
    s = sample(declined(source="STAND_IN", code="91"), reversals=(sent(0, reversal_id="rev-9"),))
    check = compare([s], [book(AMOUNT, own=AMOUNT, advices=((True, AMOUNT),))])
    [example] = check.examples[Figure.REVERSALS_NOT_APPLIED.value]
    assert example.startswith("1001/r1#d1: acquirer: ")
    told = ("91 STAND_IN", "rev-9 to 0 acked")
    booked = ("issuer: own 00 held 1000", "advices [ adv-0", "final 1000")
    for part in told + booked:
        assert part in example, part


def test_compare_reports_settlement_and_reversals() -> None:
    """journaled / advised / redelivered follow stand-in answers; reversals sent, acknowledged, booked."""
    s = sample(
        approved(source="STAND_IN", decision_id="adv-0"),
        reversals=(sent(400), sent(0, acked=False, reversal_id="rev-2")),
    )
    b = book(400, advices=((True, AMOUNT),), reversals=(400,))
    b.advices[0].received = 3
    other = sample(declined(source="STAND_IN", code="91", decision_id="unrecorded"))
    other.request_id = "r2"
    check = compare([s, other], [b])
    assert isinstance(check, MoneyCheck)
    assert (check.journaled, check.advised, check.redelivered) == (1, 1, 2)
    assert (check.reversals_sent, check.reversals_acked, check.reversals_applied) == (2, 1, 1)
    assert (check.requests, check.books) == (2, 1)
    assert check.figures() == {**dict.fromkeys(check.figures(), 0), "amount_mismatches": 1}


# --- settlement done, or no verdict ---------------------------------------------------------------


def test_a_check_before_settlement_is_done_says_what_is_left_and_gives_no_figures() -> None:
    """A stand-in approval not yet advised, an acknowledged reversal not yet booked, journal entries
    left: each keeps the check unsettled (not ok), and its report shows no money figure."""
    s = sample(approved(source="STAND_IN", decision_id="adv-0"), reversals=(sent(0),))
    advised = book(0, advices=((True, AMOUNT),), reversals=(0,))
    assert compare([s], [advised]).unsettled == ()
    assert compare([s], [advised]).ok
    cases = {
        "stand-in decisions advised 0/1": compare([s], [book(0, reversals=(0,))], gateway_backlog=None),
        "acknowledged reversals booked by the issuer 0/1": compare([s], [book(0, advices=((True, AMOUNT),))]),
        "gateway journal entries 2": compare([s], [advised], gateway_backlog=2),
        "gateway journals unreadable": compare([s], [advised], gateway_backlog=-1),
    }
    for left, check in cases.items():
        assert check.unsettled == (left,)
        assert not check.ok
        doc = check.as_dict()
        assert doc["settled"] is False
        assert {name: doc[name] for name in check.figures()} == dict.fromkeys(check.figures())


def test_only_the_decision_told_last_must_be_advised() -> None:
    """A request answered by stand-in twice under two decision ids (a local decision, then the one
    Redis gave a repeat): migration advises only the one told last, so settlement waits for that one
    alone; when it is not advised, the check is unsettled while the journals may still hold it."""
    s = sample(
        approved(source="STAND_IN", decision_id="local-1"), approved(source="STAND_IN", decision_id="adv-0")
    )
    check = compare([s], [book(AMOUNT, advices=((True, AMOUNT),))])
    assert (check.journaled, check.advised, check.unsettled) == (1, 1, ())
    told_last_missing = sample(
        approved(source="STAND_IN", decision_id="adv-0"), approved(source="STAND_IN", decision_id="x")
    )
    journals = book(AMOUNT, advices=((True, AMOUNT),))
    assert compare([told_last_missing], [journals], gateway_backlog=None).unsettled == (
        "stand-in decisions advised 0/1",
    )
    assert compare([told_last_missing], [journals], gateway_backlog=3).unsettled == (
        "stand-in decisions advised 0/1",
        "gateway journal entries 3",
    )
    # the journals read empty: nothing is left to send, the money figures judge the rest
    assert compare([told_last_missing], [journals], gateway_backlog=0).unsettled == ()


def test_a_stand_in_no_effect_reversal_is_not_waited_for() -> None:
    """A reversal stand-in acknowledged with NO_EFFECT is recorded nowhere: settlement does not wait for it;
    one acknowledged by stand-in as STORED (or by an issuer) must be booked; an unacknowledged one too."""
    s = sample(declined(source="STAND_IN", code="05", decision_id="adv-0"), reversals=(sent(0),))
    s.reversals[0].source, s.reversals[0].status = "STAND_IN", "NO_EFFECT"
    declined_book = book(0, advices=((False, AMOUNT),))
    assert compare([s], [declined_book]).settled
    for source, status in (("STAND_IN", "STORED"), ("ISSUER", "NO_EFFECT")):  # the issuer booked it
        s.reversals[0].source, s.reversals[0].status = source, status
        assert compare([s], [declined_book]).unsettled == ("acknowledged reversals booked by the issuer 0/1",)
    s.reversals[0].acked = False
    assert compare([s], [declined_book]).unsettled[0] == "reversals acknowledged 0/1"


def test_an_unsettled_run_fails_on_settlement_and_reports_no_money_figure() -> None:
    """The experiment's criteria: before settlement is done, one failing criterion naming what is left,
    and no criterion of a money figure; once done, the six figures are judged."""
    s = sample(approved(source="STAND_IN", decision_id="adv-0"))
    unsettled = money_criteria(compare([s], [book(AMOUNT, own=AMOUNT)], gateway_backlog=1))
    assert [(c.name, c.passed) for c in unsettled] == [(SETTLED, False)]
    assert unsettled[0].observed == "NOT SETTLED: stand-in decisions advised 0/1; gateway journal entries 1"
    settled = money_criteria(compare([s], [book(AMOUNT, advices=((True, AMOUNT),))]))
    assert [c.passed for c in settled] == [True] * 7
    assert len({c.name for c in settled}) == 7
