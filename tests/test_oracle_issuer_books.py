"""The issuer simulator's side of the money contract, on real processes and both ledgers.

A request is (acquirer_id, request_id) and its content; advices are
authoritative for their request (latest answered_at wins, replacing the
issuer's own hold); reversals cap the request's book or wait for it. Each
test reads the ledger's books through IssuerSimControl/Books and, where the
money moved, the card's balance through later authorizations.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from test_oracle_support import (
    Sim,
    StartSim,
    auth_request,
    fresh_pan,
    ledger_args,
    reversal,
    rpc_error,
    sim_fleet,
    standin_advice,
)

from authgw.v1 import authorization_pb2 as pb
from chaos.card_profiles import PAN_BLOCKED
from chaos.processes import ManagedProcess
from chaos.request_key import content_digest

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def start_sim(tmp_path: Path) -> AsyncIterator[StartSim]:
    """Start simulators with extra CLI arguments; all are stopped after the test."""
    async with sim_fleet(tmp_path) as start:
        yield start


@pytest.fixture(params=["memory", "redis"])
async def issuer(request: pytest.FixtureRequest, start_sim: StartSim, redis_server: ManagedProcess) -> Sim:
    """One simulator on each ledger in turn: its private memory, then the session's shared Redis."""
    return await start_sim(*ledger_args(request.param, redis_server))


def now_us() -> int:
    return time.time_ns() // 1000


# --- the request's identity -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        {"amount_minor": 1_001},
        {"pan": "4111111111111111"},
        {"currency": "USD"},
        {"mcc": "5812"},
        {"merchant_id": "M0002"},
        {"terminal_id": "T002"},
        {"channel": pb.ECOMMERCE},
    ],
    ids=["amount", "pan", "currency", "mcc", "merchant", "terminal", "channel"],
)
async def test_reused_request_id_with_other_content_is_already_exists(
    issuer: Sim, other: dict[str, object]
) -> None:
    """The same ids with any other content field: ALREADY_EXISTS, and only the first request is booked."""
    pan, _ = fresh_pan()
    first = auth_request(pan, 1_000)
    assert (await issuer.send(first)).response_code == "00"
    fields = {"pan": first.pan, "amount_minor": first.amount_minor, **other}
    reused = auth_request(**fields, request_id=first.request_id)  # type: ignore[arg-type]
    error = await rpc_error(issuer.send(reused))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    books = await issuer.books_of(first)
    assert [(b.digest, b.final_minor) for b in books] == [(content_digest(first), 1_000)]
    assert (await issuer.control.report()).refused_other_content == 1


async def test_true_repeat_gets_the_same_answer_held_once(issuer: Sim) -> None:
    """A repeat with the same content and a later transmitted_at: the same answer, held once."""
    pan, balance = fresh_pan()
    first = auth_request(pan, balance - 100)
    first.transmitted_at.FromMicroseconds(now_us())
    answer = await issuer.send(first)
    again = auth_request(pan, balance - 100, request_id=first.request_id)
    again.transmitted_at.FromMicroseconds(now_us() + 5_000_000)
    assert await issuer.send(again) == answer
    assert (await issuer.book(first)).final_minor == balance - 100
    assert (await issuer.authorize(pan, 100)).response_code == "00"  # the repeat held nothing more


async def test_same_request_id_from_another_acquirer_is_another_request(issuer: Sim) -> None:
    """request_ids are per acquirer: another acquirer's same id, other content, is its own request."""
    pan, _ = fresh_pan()
    mine = auth_request(pan, 1_000, acquirer_id="1001")
    theirs = auth_request(pan, 2_000, acquirer_id="2002", request_id=mine.request_id)
    assert (await issuer.send(mine)).response_code == "00"
    assert (await issuer.send(theirs)).response_code == "00"
    assert (await issuer.book(mine)).final_minor == 1_000
    assert (await issuer.book(theirs)).final_minor == 2_000


# --- advices: authoritative for their request -----------------------------------------------------


async def test_late_approval_then_standin_decline_advice_releases_the_hold(issuer: Sim) -> None:
    """The issuer approved too late, stand-in declined and advised it: the book ends at 0, hold released."""
    pan, balance = fresh_pan()
    request = auth_request(pan, balance)  # the whole balance: a later approval proves the release
    assert (await issuer.send(request)).response_code == "00"
    assert not (
        await issuer.send_advice(standin_advice(request, approved=False, answered_at_us=now_us()))
    ).duplicate
    book = await issuer.book(request)
    assert (book.own.arrived, book.own.held_minor, book.final_minor) == (True, balance, 0)
    assert (await issuer.send(auth_request(pan, balance))).response_code == "00"


async def test_answer_forwarded_after_an_advice_overrides_it(issuer: Sim) -> None:
    """An advice overrides answers forwarded before it; a repeat forwarded after it wins back the book."""
    pan, _ = fresh_pan()
    request = auth_request(pan, 1_200)
    t = now_us()
    request.forwarded_at.FromMicroseconds(t)
    assert (await issuer.send(request)).response_code == "00"
    await issuer.send_advice(standin_advice(request, approved=False, answered_at_us=t + 1))
    assert (await issuer.book(request)).final_minor == 0  # the approval went out before the decline
    request.forwarded_at.FromMicroseconds(t + 2)  # the acquirer's repeat, answered by the issuer
    assert (await issuer.send(request)).response_code == "00"
    book = await issuer.book(request)
    assert (book.final_minor, book.own.forwarded_at_us) == (1_200, t + 2)


async def test_late_approval_then_approval_advice_posts_once(issuer: Sim) -> None:
    """The issuer approved too late, stand-in approved it too: posted once, at the advice's amount."""
    pan, balance = fresh_pan()
    request = auth_request(pan, balance - 1_000)
    assert (await issuer.send(request)).response_code == "00"
    await issuer.send_advice(standin_advice(request, approved=True, answered_at_us=now_us()))
    book = await issuer.book(request)
    assert (book.final_minor, book.approval_advices) == (balance - 1_000, 1)
    assert (await issuer.authorize(pan, 1_000)).response_code == "00"
    assert (await issuer.authorize(pan, 1)).response_code == "51"


async def test_two_approval_advices_are_counted_in_the_book(issuer: Sim) -> None:
    """Two decision_ids approving one request: the book counts both (a breach), holds the amount once."""
    pan, _ = fresh_pan()
    request = auth_request(pan, 1_500)
    for answered_at in (now_us(), now_us() + 1):
        await issuer.send_advice(standin_advice(request, approved=True, answered_at_us=answered_at))
    book = await issuer.book(request)
    assert (book.approval_advices, book.final_minor, book.own.arrived) == (2, 1_500, False)


async def test_latest_answered_at_wins_whatever_the_arrival_order(issuer: Sim) -> None:
    """Advices out of order: the book follows the one answered last, not the one that came last or first."""
    pan, _ = fresh_pan()
    request = auth_request(pan, 2_500)
    t = now_us()
    await issuer.send_advice(standin_advice(request, approved=False, answered_at_us=t + 2))
    await issuer.send_advice(standin_advice(request, approved=True, answered_at_us=t + 1))
    assert (await issuer.book(request)).final_minor == 0
    await issuer.send_advice(standin_advice(request, approved=True, answered_at_us=t + 3))
    assert (await issuer.book(request)).final_minor == 2_500


async def test_redelivered_advice_has_no_new_effect(issuer: Sim) -> None:
    """The same decision_id twice: acked duplicate, booked once with received = 2."""
    pan, _ = fresh_pan()
    request = auth_request(pan, 700)
    advice = standin_advice(request, approved=True, answered_at_us=now_us())
    assert not (await issuer.send_advice(advice)).duplicate
    assert (await issuer.send_advice(advice)).duplicate
    book = await issuer.book(request)
    assert [(a.decision_id, a.received) for a in book.advices] == [(advice.decision_id, 2)]
    assert (book.final_minor, book.approval_advices) == (700, 1)


async def test_advice_with_other_content_is_booked_as_another_request(issuer: Sim) -> None:
    """An advice for known ids with other content gets a book of its own; the original's book is untouched."""
    pan, _ = fresh_pan()
    original = auth_request(pan, 1_000)
    assert (await issuer.send(original)).response_code == "00"
    other = auth_request(pan, 3_000, request_id=original.request_id)
    await issuer.send_advice(standin_advice(other, approved=True, answered_at_us=now_us()))
    books = {b.digest: b for b in await issuer.books_of(original)}
    mine, theirs = books[content_digest(original)], books[content_digest(other)]
    assert (mine.claimed, mine.final_minor, theirs.claimed, theirs.final_minor) == (True, 1_000, False, 3_000)


# --- reversals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("final", [0, 400], ids=["full", "partial"])
async def test_reversal_after_the_original_caps_the_book(issuer: Sim, final: int) -> None:
    """A full or partial reversal of an approval: APPLIED, the book ends at its final amount."""
    pan, balance = fresh_pan()
    request = auth_request(pan, balance)
    assert (await issuer.send(request)).response_code == "00"
    answer = await issuer.reverse(reversal(request, final))
    assert (answer.status, answer.response_code, answer.source) == (pb.APPLIED, "00", pb.ISSUER)
    book = await issuer.book(request)
    assert (book.final_minor, [r.status for r in book.reversals]) == (final, [pb.APPLIED])
    assert (await issuer.authorize(pan, balance - final)).response_code == "00"
    assert (await issuer.authorize(pan, 1)).response_code == "51"


async def test_reversal_before_the_original_is_held_and_the_original_declined(issuer: Sim) -> None:
    """A reversal of an unknown request is STORED; the original arriving later is declined 05."""
    pan, balance = fresh_pan()
    request = auth_request(pan, balance)
    assert (await issuer.reverse(reversal(request, 0))).status == pb.STORED
    answer = await issuer.send(request)
    assert (answer.decision, answer.response_code) == (pb.DECLINED, "05")
    book = await issuer.book(request)
    assert (book.own.response_code, book.own.held_minor, book.final_minor) == ("05", 0, 0)
    assert [r.status for r in book.reversals] == [pb.STORED]
    assert (await issuer.authorize(pan, balance)).response_code == "00"


async def test_held_reversal_caps_a_later_approval_advice(issuer: Sim) -> None:
    """A partial reversal held, then stand-in's approval of the original advised: posted, capped by it."""
    pan, _ = fresh_pan()
    request = auth_request(pan, 5_000)
    assert (await issuer.reverse(reversal(request, 1_200))).status == pb.STORED
    await issuer.send_advice(standin_advice(request, approved=True, answered_at_us=now_us()))
    book = await issuer.book(request)
    assert (book.final_minor, book.own.arrived, book.claimed) == (1_200, False, True)


async def test_held_reversal_of_one_content_never_releases_a_reused_ids_other_content(issuer: Sim) -> None:
    """The original never arrived and was reversed (held); its id reused with another amount reaches
    the issuer first (a stand-in approval advised) and claims the record: the reversal names the
    original's amount, so it stays held and the other content is posted in full (chaos-money)."""
    pan, _ = fresh_pan()
    original = auth_request(pan, 661)
    reused = auth_request(pan, 662, request_id=original.request_id)
    assert (await issuer.reverse(reversal(original, 0))).status == pb.STORED
    await issuer.send_advice(standin_advice(reused, approved=True, answered_at_us=now_us()))
    books = await issuer.books_of(original)
    claimed = await issuer.book(reused)
    [held] = [b for b in books if not b.digest]
    assert (claimed.claimed, claimed.final_minor, list(claimed.reversals)) == (True, 662, [])
    assert [r.status for r in held.reversals] == [pb.STORED]
    advice = standin_advice(original, approved=True, answered_at_us=now_us())
    await issuer.send_advice(advice)  # the original after all: capped by its own reversal
    assert ((await issuer.book(original)).final_minor, (await issuer.book(reused)).final_minor) == (0, 662)


async def test_reversal_of_a_decline_has_no_effect(issuer: Sim) -> None:
    """Reversing a declined request (a blocked card) answers NO_EFFECT and the book stays at 0."""
    request = auth_request(PAN_BLOCKED, 900)
    assert (await issuer.send(request)).response_code == "05"
    assert (await issuer.reverse(reversal(request, 0))).status == pb.NO_EFFECT
    book = await issuer.book(request)
    assert (book.final_minor, [r.status for r in book.reversals]) == (0, [pb.NO_EFFECT])


async def test_reversal_is_idempotent_by_id(issuer: Sim) -> None:
    """The same reversal_id again gets the first status (APPLIED, not NO_EFFECT) and is booked once."""
    pan, _ = fresh_pan()
    request = auth_request(pan, 3_000)
    assert (await issuer.send(request)).response_code == "00"
    partial = reversal(request, 1_000)
    assert (await issuer.reverse(partial)).status == pb.APPLIED
    assert (await issuer.reverse(partial)).status == pb.APPLIED
    book = await issuer.book(request)
    assert [(r.reversal_id, r.received) for r in book.reversals] == [(partial.reversal_id, 2)]
    assert book.final_minor == 1_000
    assert (await issuer.control.report()).duplicate_reversals == 1
