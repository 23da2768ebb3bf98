"""A gateway process whose issuer pools are ISO 8583 hosts: answers, failover, reversals, over mutual TLS.

One topology for the module: a gateway (`authgw serve`, stand-in on Redis, its settlement worker)
with two pools (primary a1, secondary b1) whose members have `protocol = "iso8583"`, each an issuer
simulator's ISO 8583 port sharing one issuer ledger; the acquirer calls the gateway over gRPC.
Money is checked per request in the issuer's books.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator, Iterator

import pytest

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from authgw.v1 import simulator_pb2
from chaos.card_profiles import PAN_BLOCKED
from chaos.topology import Topology, TopologySpec
from tests.gateway_fixtures import auth_request
from tests.helpers import PAN_VISA, assert_eventually

pytestmark = pytest.mark.timeout(120)

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    spec = TopologySpec(
        pools={"primary": ("a1",), "secondary": ("b1",)},
        redis=True,
        iso8583_issuers=True,
        iso8583_pool={"connections": 2, "echo_interval": "1s", "echo_timeout": "500ms"},
    )
    topology = Topology(tmp_path_factory.mktemp("iso-issuers"), spec).start()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
async def acquirer(topo: Topology) -> AsyncIterator[pb_grpc.AuthorizationStub]:
    async with topo.acquirer_channel(topo.gateways[0].address) as channel:
        yield pb_grpc.AuthorizationStub(channel)


def request(**fields: object) -> pb.AuthorizeRequest:
    req = auth_request(**{"request_id": f"iso-gw-{next(_ids)}-{id(fields)}", **fields})
    req.transmitted_at.GetCurrentTime()
    return req


async def book_of(topo: Topology, request_id: str) -> simulator_pb2.RequestBook:
    async with topo.sim_control("a1") as control:
        books = await control.books()
    (book,) = [b for b in books.books if b.request_id == request_id]
    return book


async def test_iso8583_member_answers_approval_decline_and_expired_card(
    topo: Topology, acquirer: pb_grpc.AuthorizationStub
) -> None:
    """The primary's ISO 8583 host approves (held once in its books), declines 05 and 54."""
    approved = request(amount_minor=1500)
    answer = await acquirer.Authorize(approved, timeout=5)
    blocked = await acquirer.Authorize(request(pan=PAN_BLOCKED), timeout=5)
    expired = await acquirer.Authorize(request(pan=PAN_VISA, card_expiry="2001"), timeout=5)
    assert (answer.response_code, answer.source, answer.pool, answer.member) == (
        "00",
        pb.ISSUER,
        "primary",
        "a1",
    )
    assert (blocked.response_code, blocked.source, blocked.pool) == ("05", pb.ISSUER, "primary")
    assert (expired.response_code, expired.source, expired.pool) == ("54", pb.ISSUER, "primary")
    book = await book_of(topo, approved.request_id)
    assert (book.own.held_minor, book.final_minor, len(book.advices)) == (1500, 1500, 0)


async def test_reversal_reaches_the_iso8583_host(topo: Topology, acquirer: pb_grpc.AuthorizationStub) -> None:
    """A reversal of an issuer approval goes to the ISO 8583 host (0420): its book ends at 0."""
    original = request(amount_minor=2200)
    assert (await acquirer.Authorize(original, timeout=5)).response_code == "00"
    reversal = pb.ReverseRequest(
        acquirer_id=original.acquirer_id, reversal_id=f"rev-{original.request_id}",
        original_request_id=original.request_id, pan=original.pan, reason=pb.CARDHOLDER_CANCEL,
        currency="EUR", original_amount_minor=2200,
    )  # fmt: skip
    reversal.transmitted_at.GetCurrentTime()
    answer = await acquirer.Reverse(reversal, timeout=5)
    assert (answer.status, answer.source) == (pb.APPLIED, pb.ISSUER)
    assert (await book_of(topo, original.request_id)).final_minor == 0


async def test_hung_iso8583_member_fails_over_to_the_next_pool(
    topo: Topology, acquirer: pb_grpc.AuthorizationStub
) -> None:
    """Primary host stopped (TCP open, nothing answers): the secondary answers, each request held once."""
    topo.sims["a1"].signal(signal.SIGSTOP)
    try:
        requests = [request(amount_minor=300 + i) for i in range(5)]
        answers = [await acquirer.Authorize(r, timeout=5) for r in requests]
    finally:
        topo.sims["a1"].signal(signal.SIGCONT)
    assert {(a.response_code, a.source, a.pool) for a in answers} == {("00", pb.ISSUER, "secondary")}
    async with topo.sim_control("b1") as control:
        books = {b.request_id: b for b in (await control.books()).books}
    for r in requests:
        assert (books[r.request_id].own.held_minor, books[r.request_id].final_minor) == (r.amount_minor,) * 2


async def test_outage_decisions_are_advised_over_iso8583_once(
    topo: Topology, acquirer: pb_grpc.AuthorizationStub
) -> None:
    """Every host stopped: stand-in approves; one approval is reversed. Hosts back: each approval is
    posted once through 0120 advices and the reversal (0420, behind its original) ends that book at 0."""
    for member in ("a1", "b1"):
        topo.sims[member].signal(signal.SIGSTOP)
    try:
        requests = [request(amount_minor=700 + i) for i in range(4)]
        answers = await asyncio.gather(*(acquirer.Authorize(r, timeout=5) for r in requests))
        reversed_one = requests[0]
        reversal = pb.ReverseRequest(
            acquirer_id=reversed_one.acquirer_id, reversal_id=f"rev-{reversed_one.request_id}",
            original_request_id=reversed_one.request_id, pan=reversed_one.pan, reason=pb.CARDHOLDER_CANCEL,
            currency="EUR", original_amount_minor=reversed_one.amount_minor,
        )  # fmt: skip
        reversal.transmitted_at.GetCurrentTime()
        reversed_answer = await acquirer.Reverse(reversal, timeout=5)
    finally:
        for member in ("a1", "b1"):
            topo.sims[member].signal(signal.SIGCONT)
    assert {(a.response_code, a.source) for a in answers} == {("00", pb.STAND_IN)}
    assert (reversed_answer.status, reversed_answer.source) == (pb.APPLIED, pb.STAND_IN)
    expected = {r.request_id: r.amount_minor for r in requests} | {reversed_one.request_id: 0}
    decisions = {a.request_id: a.decision_id for a in answers}

    async def settled() -> None:
        async with topo.sim_control("a1") as control:
            books = {b.request_id: b for b in (await control.books()).books}
        for request_id, final in expected.items():
            book = books.get(request_id)
            assert book is not None, request_id
            assert [a.decision_id for a in book.advices if a.approved] == [decisions[request_id]]
            assert (book.approval_advices, book.final_minor) == (1, final), request_id
        assert [r.reversal_id for r in books[reversed_one.request_id].reversals] == [reversal.reversal_id]

    await assert_eventually(settled, timeout_s=30)
