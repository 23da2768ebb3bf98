"""The issuer simulator's books across hosts, in pages, under concurrency and faults.

Two real simulator processes share the session's real Redis as their ledger,
as the hosts of one issuer share its core banking system: whatever host a
call reaches, there is one book per request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
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
from authgw.v1 import simulator_pb2, simulator_pb2_grpc
from chaos.book import AdviceBooked, HoldAttempt, RequestRecord
from chaos.ledger_protocol import Ledger, ReversalEntry
from chaos.memory_ledger import MemoryLedger
from chaos.processes import ManagedProcess
from chaos.redis_ledger import RedisLedger
from chaos.sim_books import PostingTally
from chaos.sim_faults import FaultGate
from chaos.sim_servicers import ControlServicer, HostState, SimCounters

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def start_sim(tmp_path: Path) -> AsyncIterator[StartSim]:
    """Start simulators with extra CLI arguments; all are stopped after the test."""
    async with sim_fleet(tmp_path) as start:
        yield start


@pytest.fixture
async def pair(start_sim: StartSim, redis_server: ManagedProcess) -> tuple[Sim, Sim]:
    """Two hosts of one issuer (two pools) sharing the session's Redis as their ledger."""
    shared = ledger_args("redis", redis_server)
    return await start_sim(*shared, pool="primary", member="a1"), await start_sim(
        *shared, pool="secondary", member="b1"
    )


async def test_hosts_sharing_a_redis_ledger_keep_one_book(pair: tuple[Sim, Sim]) -> None:
    """Reversal held on one host, original declined on the other, advice on the first: one book for both."""
    a, b = pair
    pan, _ = fresh_pan()
    request = auth_request(pan, 4_000)
    assert (await a.reverse(reversal(request, 1_500))).status == pb.STORED
    assert (await b.send(request)).response_code == "05"
    await a.send_advice(standin_advice(request, approved=True, answered_at_us=time.time_ns() // 1000))
    book_a, book_b = await a.book(request), await b.book(request)
    assert book_a == book_b
    assert (book_a.own.response_code, book_a.final_minor, book_a.approval_advices) == ("05", 1_500, 1)


async def test_concurrent_calls_on_two_hosts_book_once(pair: tuple[Sim, Sim]) -> None:
    """One request authorized and advised 10 times at once on each of two hosts: one answer, one posting."""
    a, b = pair
    pan, balance = fresh_pan()
    request = auth_request(pan, balance - 50)
    advice = standin_advice(request, approved=True, answered_at_us=time.time_ns() // 1000)
    answers = await asyncio.gather(*(host.send(request) for host in (a, b) * 10))
    acks = await asyncio.gather(*(host.send_advice(advice) for host in (a, b) * 10))
    assert len({a.SerializeToString() for a in answers}) == 1
    assert sum(not ack.duplicate for ack in acks) == 1
    book = await a.book(request)
    assert (book.final_minor, book.approval_advices, book.advices[0].received) == (balance - 50, 1, 20)
    assert (await b.authorize(pan, 50)).response_code == "00"
    assert (await a.authorize(pan, 1)).response_code == "51"


async def test_concurrent_authorizations_never_overdraw_a_card(pair: tuple[Sim, Sim]) -> None:
    """20 requests for 60 % of one card's balance at once on two hosts: one approved, the rest 51."""
    a, b = pair
    pan, balance = fresh_pan()
    requests = [auth_request(pan, balance * 6 // 10) for _ in range(20)]
    answers = await asyncio.gather(*((a, b)[i % 2].send(r) for i, r in enumerate(requests)))
    assert sorted(x.response_code for x in answers) == ["00"] + ["51"] * 19


async def test_advice_redelivered_to_another_host_with_another_request_is_a_duplicate(
    pair: tuple[Sim, Sim],
) -> None:
    """Idempotent by decision_id alone: the same decision_id carrying another request is a duplicate."""
    a, b = pair
    pan, _ = fresh_pan()
    first = standin_advice(auth_request(pan, 800), approved=True)
    assert not (await a.send_advice(first)).duplicate
    other = standin_advice(auth_request(pan, 800), approved=True, decision_id=first.decision_id)
    assert (await b.send_advice(other)).duplicate
    assert await b.books_of(other.request) == []


@pytest.mark.parametrize("ledger", ["memory", "redis"])
async def test_books_come_in_pages_then_the_postings_check(
    start_sim: StartSim, redis_server: ManagedProcess, ledger: str
) -> None:
    """Books asked with page_size 10 come in several pages; the last says no posting is unexplained."""
    sim = await start_sim(*ledger_args(ledger, redis_server))
    pan, _ = fresh_pan()
    requests = [auth_request(pan, 10) for _ in range(25)]
    for request in requests:
        assert (await sim.send(request)).response_code == "00"
    stub = simulator_pb2_grpc.IssuerSimControlStub(sim.channel)
    pages = [p async for p in stub.Books(simulator_pb2.BooksRequest(page_size=10), timeout=10.0)]
    assert len(pages) >= 4
    assert all(len({(b.acquirer_id, b.request_id) for b in p.books}) <= 10 for p in pages)
    assert (pages[-1].last, pages[-1].unexplained.cards) == (True, 0)
    ids = {b.request_id for p in pages for b in p.books}
    assert {r.request_id for r in requests} <= ids


class _Context:
    """What the Books servicer asks of its gRPC context (only when the ledger is unavailable)."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AssertionError(f"Books aborted: {code} {details}")


@pytest.mark.parametrize("ledger", ["memory", "redis"])
async def test_books_are_one_snapshot_whatever_posts_while_they_are_paged(
    redis_server: ManagedProcess, ledger: str
) -> None:
    """A reversal (settlement forwarding one) lands after the first page of Books was sent: the pages and
    the postings check are of the ledger as it was when Books began, so no card shows unexplained."""
    store: Ledger = (
        RedisLedger.from_url(f"redis://127.0.0.1:{redis_server.port}/9", prefix=f"snap-{uuid.uuid4().hex}")
        if ledger == "redis"
        else MemoryLedger()
    )
    host = HostState("primary", "a1", store, FaultGate(), SimCounters())
    try:
        pan, _ = fresh_pan()
        for i in range(3):
            attempt = HoldAttempt(f"r{i}", pan, 1_000, f"d{i}", "A1", "primary", "a1", "1001", f"x{i}")
            assert (await store.authorize(attempt)).response_code == "00"
        pages = ControlServicer(host).Books(simulator_pb2.BooksRequest(page_size=1), _Context())
        first = await anext(pages)
        assert [b.request_id for b in first.books] == ["r0"]
        await store.reverse(ReversalEntry("1001", "rev-r0", "r0", 0))  # r0's page is already sent
        rest = [p async for p in pages]
        books = [b for p in (first, *rest) for b in p.books]
        assert [b.final_minor for b in books] == [1_000, 1_000, 1_000]
        assert (rest[-1].last, rest[-1].unexplained.cards) == (True, 0)
        again = [p async for p in ControlServicer(host).Books(simulator_pb2.BooksRequest(), _Context())]
        assert [b.final_minor for b in again[0].books] == [0, 1_000, 1_000]
        assert again[-1].unexplained.cards == 0
    finally:
        await store.close()


def test_posting_tally_finds_debits_no_book_explains() -> None:
    """A card debited more than its books hold, or with no book, is unexplained; a matching one is not."""
    record = RequestRecord("1001", "r1")
    attempt = HoldAttempt("r1", "4111111111111111", 700, "d", "ABC123", "p", "m", "1001", "dg")
    record.authorize(attempt, "card-a", lambda: "00")
    record.advise("dg2", "card-b", 300, AdviceBooked("adv", True, 300, 0, 0, "00", 1))
    tally = PostingTally()
    tally.add([record])
    assert tally.unexplained({"card-a": 700, "card-b": 300}).cards == 0
    check = tally.unexplained({"card-a": 900, "card-b": 300, "card-c": 50})
    assert (check.cards, check.amount_minor) == (2, 250)


async def test_faults_apply_to_reverse(start_sim: StartSim) -> None:
    """Reverse obeys the faults: error_rate UNAVAILABLE, advise_reject_rate FAILED_PRECONDITION, hang."""
    sim = await start_sim()
    pan, _ = fresh_pan()
    request = auth_request(pan, 100)
    await sim.control.set_faults(error_rate=1.0)
    assert (await rpc_error(sim.reverse(reversal(request, 0)))).code() == grpc.StatusCode.UNAVAILABLE
    await sim.control.set_faults(advise_reject_rate=1.0)
    rejected = await rpc_error(sim.reverse(reversal(request, 0)))
    assert rejected.code() == grpc.StatusCode.FAILED_PRECONDITION
    await sim.control.set_faults(hang=True)
    hung = await rpc_error(sim.reverse(reversal(request, 0), timeout_s=0.3))
    assert hung.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await sim.control.clear_faults()
    assert await sim.books_of(request) == []
    assert (await sim.control.report()).reverse_calls == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("reversal_id", ""), ("original_request_id", ""), ("final_amount_minor", -1)],
)
async def test_malformed_reversal_is_invalid_argument(start_sim: StartSim, field: str, value: object) -> None:
    """A reversal without its ids or with a negative final amount is INVALID_ARGUMENT and booked nowhere."""
    sim = await start_sim()
    pan, _ = fresh_pan()
    bad = reversal(auth_request(pan, 100), 0)
    setattr(bad, field, value)
    error = await rpc_error(sim.reverse(bad))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert (await sim.all_books()).books == []
