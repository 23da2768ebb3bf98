"""Acquirer advices over gRPC (Authorization/Advise) to a real gateway process, checked in the issuer's books.

One TLS topology for the module: a gateway process with stand-in on Redis, one issuer
simulator. Each test checks the simulator's book of its own request: posted once, with
the advice's amount and origin.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from helpers import assert_eventually
from test_standin_support import luhn_pan

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from authgw.v1 import simulator_pb2
from chaos.processes import free_port
from chaos.topology import Topology, TopologySpec
from gateway.app import Gateway
from tests.gateway_fixtures import gateway_config

pytestmark = pytest.mark.timeout(120)

PAN = "4111111111111111"  # the simulator's well-known card that always has funds
ACQUIRER = "1001"
_ids = itertools.count()


SCRAPE_PORT = free_port()


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    telemetry = {"exporter": "none", "prometheus_listen": f"127.0.0.1:{SCRAPE_PORT}"}
    spec = TopologySpec(pools={"primary": ("a1",)}, redis=True, gateway_extra={"telemetry": telemetry})
    topo = Topology(tmp_path_factory.mktemp("advice-e2e"), spec).start()
    try:
        yield topo
    finally:
        topo.stop()


def advice(amount_minor: int, kind: int = pb.FORCED_POST, **request: object) -> pb.AcquirerAdvice:
    sent = Timestamp()
    sent.GetCurrentTime()
    fields: dict[str, object] = {
        "request_id": f"adv-{time.monotonic_ns()}-{next(_ids)}", "acquirer_id": ACQUIRER, "pan": PAN,
        "amount_minor": amount_minor, "currency": "EUR", "mcc": "5411", "channel": pb.POS_CHIP,
        "merchant_id": "M1", "terminal_id": "T1", "merchant_country": "FR", "transmitted_at": sent,
    }  # fmt: skip
    fields.update(request)
    return pb.AcquirerAdvice(request=pb.AuthorizeRequest(**fields), kind=kind, approval_code="V12345")


async def send(topology: Topology, message: pb.AcquirerAdvice) -> pb.AdviceAck:
    async with topology.acquirer_channel(topology.gateways[0].address) as channel:
        ack: pb.AdviceAck = await pb_grpc.AuthorizationStub(channel).Advise(message, timeout=10.0)
        return ack


async def book_of(topology: Topology, request_id: str) -> simulator_pb2.RequestBook | None:
    async with topology.sim_control("a1") as control:
        ledger = await control.books()
    found = [b for b in ledger.books if b.request_id == request_id and b.acquirer_id == ACQUIRER]
    return found[0] if found else None


async def posted_once(topology: Topology, message: pb.AcquirerAdvice, origin: int) -> None:
    """Wait until the issuer's book of the advice's request holds its amount, from one approval advice."""

    async def check() -> None:
        book = await book_of(topology, message.request.request_id)
        assert book is not None
        assert (book.approval_advices, book.final_minor) == (1, message.request.amount_minor), book
        assert [a.origin for a in book.advices] == [origin], book

    await assert_eventually(check, timeout_s=30.0, interval_s=0.3)


async def test_an_advice_while_the_issuer_answers_is_posted_once(topology: Topology) -> None:
    """Advise with the issuer up: acknowledged, forwarded at once by settlement, posted once (origin
    ACQUIRER_FORCED_POST); the repeat is acknowledged as a duplicate of the same decision, no new posting."""
    message = advice(700)
    ack = await send(topology, message)
    assert ack.decision_id and not ack.duplicate
    await posted_once(topology, message, pb.ACQUIRER_FORCED_POST)
    again = await send(topology, message)
    assert (again.decision_id, again.duplicate) == (ack.decision_id, True)
    await posted_once(topology, message, pb.ACQUIRER_FORCED_POST)


async def _journaled(topology: Topology, request_id: str) -> bool:
    redis = topology.redis_admin()
    try:
        async for stream in redis.scan_iter(match="authgw:{journal:*}:decisions"):
            for _, fields in await redis.xrange(stream):
                if fields.get(b"request_id") == request_id.encode():
                    return True
        return False
    finally:
        await redis.aclose()


async def test_during_a_total_outage_an_advice_is_stored_then_posted_once(topology: Topology) -> None:
    """The only issuer host SIGSTOPped: the offline advice is acknowledged and sits in the journal;
    once the host resumes, settlement posts it exactly once (origin ACQUIRER_OFFLINE)."""
    message = advice(900, pb.OFFLINE_APPROVED)
    topology.sims["a1"].signal(signal.SIGSTOP)
    try:
        ack = await send(topology, message)
        stored = await _journaled(topology, message.request.request_id)
    finally:
        topology.sims["a1"].signal(signal.SIGCONT)
    assert ack.decision_id and stored
    await posted_once(topology, message, pb.ACQUIRER_OFFLINE)


async def _authorize(topology: Topology, pan: str, amount_minor: int) -> pb.AuthorizeResponse:
    request = advice(amount_minor, pan=pan, pin_verified=True).request  # chip and PIN: the full tier
    async with topology.acquirer_channel(topology.gateways[0].address) as channel:
        stub = pb_grpc.AuthorizationStub(channel)
        answer: pb.AuthorizeResponse = await stub.Authorize(request, timeout=10.0)
        return answer


async def test_an_offline_advice_leaves_the_card_less_in_stand_in(topology: Topology) -> None:
    """Every issuer host stopped: 1,400.00 spent offline on a card (the default window: 1,500.00), then a
    200.00 stand-in request of that card is declined 61, while the same request of a fresh card passes;
    after recovery the advice is posted once."""
    spent, fresh = luhn_pan("5412"), luhn_pan("5413")
    message = advice(140_000, pb.OFFLINE_APPROVED, pan=spent)
    topology.sims["a1"].signal(signal.SIGSTOP)
    try:
        await send(topology, message)
        after = await _authorize(topology, spent, 20_000)
        control = await _authorize(topology, fresh, 20_000)
    finally:
        topology.sims["a1"].signal(signal.SIGCONT)
    assert (control.source, control.response_code) == (pb.STAND_IN, "00")
    assert (after.source, after.response_code, after.rule) == (pb.STAND_IN, "61", "limit.amount.purchase")
    await posted_once(topology, message, pb.ACQUIRER_OFFLINE)


def _scrape() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{SCRAPE_PORT}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
        return text


async def test_advices_are_counted_by_kind_and_repeat(topology: Topology) -> None:
    """authgw.acquirer_advices counts a new advice and its repeat apart (duplicate true / false)."""
    message = advice(300)
    await send(topology, message)
    await send(topology, message)

    def counted(line: str) -> bool:
        return line.startswith("authgw_acquirer_advices_total{") and 'kind="forced_post"' in line

    lines = [line for line in (await asyncio.to_thread(_scrape)).splitlines() if counted(line)]
    by_repeat = {('duplicate="true"' in line): float(line.rsplit(" ", 1)[1]) for line in lines}
    assert by_repeat.get(True, 0) >= 1 and by_repeat.get(False, 0) >= 1, lines


async def test_a_reused_request_id_with_other_content_is_refused(topology: Topology) -> None:
    """The same (acquirer, request id) advised again for another amount: ALREADY_EXISTS; only the first
    is posted."""
    first = advice(1_100)
    await send(topology, first)
    other = advice(1_200, request_id=first.request.request_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await send(topology, other)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await posted_once(topology, first, pb.ACQUIRER_FORCED_POST)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (advice(500, kind=pb.ACQUIRER_ADVICE_KIND_UNSPECIFIED), "kind"),
        (advice(500, pan="4111111111111112"), "request.pan"),
        (pb.AcquirerAdvice(kind=pb.FORCED_POST), "request"),
        (
            pb.AcquirerAdvice(request=advice(5).request, kind=pb.FORCED_POST, approval_code="AB"),
            "approval_code",
        ),
    ],
)
async def test_a_bad_advice_is_invalid_argument_naming_the_field(
    topology: Topology, message: pb.AcquirerAdvice, field: str
) -> None:
    """Validation errors are INVALID_ARGUMENT, the message starting with the field's name."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await send(topology, message)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(f"{field}:"), refused.value.details()


async def test_an_advice_for_another_acquirer_is_permission_denied(topology: Topology) -> None:
    """Acquirer 1001's certificate advising as 1002: PERMISSION_DENIED, nothing reaches the issuer."""
    message = advice(600, acquirer_id="1002")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await send(topology, message)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await book_of(topology, message.request.request_id) is None


async def test_a_gateway_without_a_journal_answers_unavailable() -> None:
    """No [standin]: nothing can record an advice, so it is UNAVAILABLE (the acquirer repeats it), never
    acknowledged."""
    gw = Gateway(gateway_config([("primary", ["127.0.0.1:1"])]))
    await gw.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb_grpc.AuthorizationStub(channel).Advise(advice(500), timeout=10.0)
    finally:
        await gw.close()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no stand-in journal" in (refused.value.details() or "")
