"""The issuer simulator's ISO 8583 port: the same host, books and faults as its gRPC port.

A real simulator process with `--iso8583-listen`; the client is the gateway's own issuer link
(`IsoLinks`: persistent connections, the issuer-side mapping), and every money check reads the
simulator's books over its gRPC control port: what came in over ISO 8583 is booked by request id.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import PAN_VISA, assert_eventually

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import simulator_pb2
from chaos.card_profiles import PAN_BLOCKED
from chaos.processes import ManagedProcess, free_port, start_authgw, wait_for_port
from chaos.sim_control import SimControl
from gateway.edges.iso8583_issuer import IsoIssuerStub, IsoLinks
from gateway.edges.iso8583_issuer_link import IssuerLink
from tests.gateway_fixtures import auth_request

pytestmark = pytest.mark.timeout(60)

_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC).timestamp():.0f}-{next(_ids)}"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ManagedProcess, int]]:
    """One simulator (plaintext, its own ledger) serving gRPC and ISO 8583."""
    workdir: Path = tmp_path_factory.mktemp("iso-sim")
    port, iso_port = free_port(), free_port()
    args = ["issuer-sim", "--listen", f"127.0.0.1:{port}", "--pool", "primary", "--member", "a1"]
    proc = start_authgw(workdir, "sim-a1", [*args, "--iso8583-listen", f"127.0.0.1:{iso_port}"], port)
    try:
        wait_for_port(iso_port)
        yield proc, iso_port
    finally:
        proc.stop()


@pytest.fixture
async def host(sim: tuple[ManagedProcess, int]) -> AsyncIterator[tuple[IssuerLink, IsoIssuerStub]]:
    link, stub = IsoLinks().open(f"127.0.0.1:{sim[1]}", lambda _reason: None)
    link.start()

    async def connected() -> None:
        assert link.open_connections == link.settings.connections

    await assert_eventually(connected)
    try:
        yield link, stub
    finally:
        await link.close()


async def book_of(sim: ManagedProcess, request_id: str) -> simulator_pb2.RequestBook:
    async with SimControl(sim.address) as control:
        books = await control.books()
    (book,) = [b for b in books.books if b.request_id == request_id]
    return book


async def authorize(
    stub: IsoIssuerStub, **fields: object
) -> tuple[pb.AuthorizeRequest, pb.AuthorizeResponse]:
    request = auth_request(**{"request_id": unique("iso"), **fields})
    request.transmitted_at.GetCurrentTime()
    request.forwarded_at.GetCurrentTime()
    return request, await stub.Authorize(request, timeout=2.0)


async def test_approval_over_iso8583_is_held_under_the_request_id(
    sim: tuple[ManagedProcess, int], host: tuple[IssuerLink, IsoIssuerStub]
) -> None:
    """An 0100 is approved with a code and booked under the contract's request id (field 48), held once."""
    request, response = await authorize(host[1], amount_minor=4321)
    assert (response.decision, response.response_code) == (pb.APPROVED, "00")
    assert len(response.approval_code) == 6 and response.decision_id
    book = await book_of(sim[0], request.request_id)
    assert (book.own.response_code, book.own.held_minor, book.final_minor) == ("00", 4321, 4321)


async def test_declines_over_iso8583(host: tuple[IssuerLink, IsoIssuerStub]) -> None:
    """A blocked card is declined 05 and an expired one 54, as on the gRPC port."""
    _, blocked = await authorize(host[1], pan=PAN_BLOCKED)
    _, expired = await authorize(host[1], pan=PAN_VISA, card_expiry="2001")
    assert (blocked.decision, blocked.response_code) == (pb.DECLINED, "05")
    assert (expired.decision, expired.response_code) == (pb.DECLINED, "54")


async def test_advice_then_its_repeat_posted_once(
    sim: tuple[ManagedProcess, int], host: tuple[IssuerLink, IsoIssuerStub]
) -> None:
    """An 0120 posts the stand-in approval; the 0121 repeat is acknowledged as a duplicate, nothing more."""
    request = auth_request(request_id=unique("adv"), amount_minor=777)
    request.transmitted_at.GetCurrentTime()
    advice = pb.StandInAdvice(
        decision_id=unique("dec"), request=request, decision=pb.APPROVED, response_code="00",
        approval_code="SI1234", reason=pb.ALL_POOLS_FAILED,
    )  # fmt: skip
    advice.answered_at.GetCurrentTime()
    first = await host[1].Advise(advice, timeout=2.0)
    again = await host[1].Advise(advice, timeout=2.0)
    assert (first.decision_id, first.duplicate, again.duplicate) == (advice.decision_id, False, True)
    book = await book_of(sim[0], request.request_id)
    assert ([a.decision_id for a in book.advices], book.final_minor) == ([advice.decision_id], 777)


async def test_reversal_over_iso8583_releases_the_hold(
    sim: tuple[ManagedProcess, int], host: tuple[IssuerLink, IsoIssuerStub]
) -> None:
    """An 0420 for an approved request is applied (0430): the issuer's book ends at 0."""
    request, response = await authorize(host[1], amount_minor=2500)
    assert response.response_code == "00"
    reversal = pb.ReverseRequest(
        acquirer_id=request.acquirer_id, reversal_id=unique("rev"), original_request_id=request.request_id,
        pan=request.pan, reason=pb.CARDHOLDER_CANCEL, currency="EUR", original_amount_minor=2500,
    )  # fmt: skip
    answer = await host[1].Reverse(reversal, timeout=2.0)
    assert (answer.reversal_id, answer.status) == (reversal.reversal_id, pb.APPLIED)
    assert answer.response_code == "00"
    book = await book_of(sim[0], request.request_id)
    assert book.final_minor == 0


async def test_first_request_waits_for_the_link_to_connect(sim: tuple[ManagedProcess, int]) -> None:
    """A request sent as the link starts waits for its first connection (as a gRPC call waits for its
    channel) instead of failing as not sent: a gateway that just started does not fail over or stand in."""
    link, stub = IsoLinks().open(f"127.0.0.1:{sim[1]}", lambda _reason: None)
    try:
        _, response = await authorize(stub)
    finally:
        await link.close()
    assert response.response_code == "00"
