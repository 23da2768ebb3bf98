"""What goes over the wire to an ISO 8583 issuer host: advices repeated as 0121 / 0221 until answered.

The host here is a small ISO 8583 server on loopback built from the wire layer (`ServerConnection`),
so a test can see every MTI it receives and choose to leave one unanswered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from helpers import assert_eventually

from authgw.iso8583 import Channel, Framing, Message, ServerConnection, Spec, build_reply
from authgw.v1 import authorization_pb2 as pb
from gateway.edges.iso8583_issuer import IsoIssuerStub, IsoLinks
from gateway.edges.iso8583_issuer_link import IssuerLink, LinkSettings
from tests.gateway_fixtures import auth_request

pytestmark = pytest.mark.timeout(30)


class Host:
    """Records each request's MTI; answers only those `answer` accepts (00)."""

    def __init__(self, answer: Callable[[Message], bool]) -> None:
        self.answer = answer
        self.received: list[str] = []
        self.port = 0

    async def handle(self, message: Message) -> Message | None:
        self.received.append(message.mti)
        if message.mti == "0800" or self.answer(message):
            return build_reply(message, "00")
        await asyncio.sleep(3600)  # never answered: the sender's timeout decides
        return None

    async def accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ServerConnection(Channel(reader, writer, Framing()), Spec(), self.handle).serve()


async def open_host(host: Host, settings: LinkSettings) -> tuple[asyncio.Server, IssuerLink, IsoIssuerStub]:
    server = await asyncio.start_server(host.accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link, stub = IsoLinks(settings).open(f"127.0.0.1:{port}", lambda _reason: None)
    link.start()

    async def connected() -> None:
        assert link.open_connections == settings.connections

    await assert_eventually(connected)
    return server, link, stub


def stand_in_advice() -> pb.StandInAdvice:
    request = auth_request(request_id="adv-1")
    request.transmitted_at.GetCurrentTime()
    return pb.StandInAdvice(
        decision_id="dec-1", request=request, decision=pb.APPROVED, response_code="00", approval_code="SI0001"
    )


@pytest.fixture(params=[False, True], ids=["dual", "single"])
def financial(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_advice_is_repeated_as_0121_until_answered(financial: bool) -> None:
    """0120 unanswered (timeout), then 0121 answered 0130; a single-message host gets 0220 then 0221."""
    host = Host(answer=lambda m: m.mti in ("0121", "0221"))
    server, link, stub = await open_host(host, LinkSettings(connections=1, financial=financial))
    try:
        advice = stand_in_advice()
        with pytest.raises(grpc.aio.AioRpcError) as first:
            await stub.Advise(advice, timeout=0.2)
        ack = await stub.Advise(advice, timeout=2.0)
    finally:
        await link.close()
        server.close()
    assert first.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert ack.decision_id == "dec-1"
    expected = ["0220", "0221"] if financial else ["0120", "0121"]
    assert [m for m in host.received if m != "0800"] == expected


async def test_reversal_is_repeated_as_0421_until_answered() -> None:
    """0420 unanswered, then 0421 answered 0430."""
    host = Host(answer=lambda m: m.mti == "0421")
    server, link, stub = await open_host(host, LinkSettings(connections=1))
    reversal = pb.ReverseRequest(
        acquirer_id="1001", reversal_id="rev-1", original_request_id="req-1", pan="4111111111111111",
        reason=pb.TERMINAL_TIMEOUT, currency="EUR", original_amount_minor=1234,
    )  # fmt: skip
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Reverse(reversal, timeout=0.2)
        answer = await stub.Reverse(reversal, timeout=2.0)
    finally:
        await link.close()
        server.close()
    assert (answer.reversal_id, answer.status) == ("rev-1", pb.APPLIED)
    assert [m for m in host.received if m != "0800"] == ["0420", "0421"]


async def test_no_open_connection_is_not_sent() -> None:
    """With nothing listening, a request fails at once as 'failed to connect' (the router's NOT_SENT)."""
    link, stub = IsoLinks(LinkSettings(connections=1)).open("127.0.0.1:9", lambda _reason: None)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Authorize(auth_request(), timeout=1.0)
    finally:
        await link.close()
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "failed to connect" in (info.value.details() or "")
