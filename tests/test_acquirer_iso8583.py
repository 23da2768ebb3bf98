"""The chaos acquirer's ISO 8583 messages, read back by the gateway's own acquirer-side mapping.

The oracle (`chaos.verify`) matches what the load generator recorded to the issuer's books by
(acquirer_id, request_id, content digest). With ISO 8583 acquirers the gateway derives the
request id from 32 + 11 + 7 and rebuilds the content from the fields: both must come out as the
load generator recorded them, for every profile of the card mix (ATM, e-commerce, contactless...),
and a reversal's 90 must name its original's id. Encoded and decoded with the wire spec, mapped
with `gateway.edges.iso8583_mapping`, the listener's code.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from authgw.iso8583 import Message, Spec
from authgw.v1 import authorization_pb2 as pb
from chaos.acquirer_iso8583 import (
    IsoGatewayStubs,
    acquirer_advice,
    acquirer_authorization,
    acquirer_reversal,
)
from chaos.load import CardMix
from chaos.request_key import content_digest
from gateway.edges.iso8583_mapping import to_acquirer_advice, to_authorize_request, to_reverse_request

SPEC = Spec()


def _wire(message: Message) -> Message:
    return Message.decode(message.encode(SPEC), SPEC)


@pytest.fixture
def requests() -> list[pb.AuthorizeRequest]:
    stubs = IsoGatewayStubs(["127.0.0.1:1"], None)
    mix = CardMix(cards=50, acquirer_ids=("1001", "1002"))
    made = []
    for _ in range(300):
        request = mix.request()
        request.request_id = stubs.new_id(request.acquirer_id, request.request_id)
        made.append(request)
    return made


def test_the_gateway_reads_each_authorization_as_the_acquirer_recorded_it(
    requests: list[pb.AuthorizeRequest],
) -> None:
    assert {r.channel for r in requests} >= {pb.ATM, pb.ECOMMERCE, pb.POS_CONTACTLESS, pb.MOTO}
    for request in requests:
        read = to_authorize_request(_wire(acquirer_authorization(request)), datetime.now(UTC))
        assert (read.acquirer_id, read.request_id) == (request.acquirer_id, request.request_id)
        assert content_digest(read) == content_digest(request), request


def test_a_reversal_names_its_original_and_carries_the_final_amount(
    requests: list[pb.AuthorizeRequest],
) -> None:
    stubs = IsoGatewayStubs(["127.0.0.1:1"], None)
    for request in requests[:50]:
        reversal = pb.ReverseRequest(
            acquirer_id=request.acquirer_id, reversal_id=stubs.new_id(request.acquirer_id, "r"),
            original_request_id=request.request_id, pan=request.pan,
            final_amount_minor=request.amount_minor // 2, reason=pb.TERMINAL_TIMEOUT,
            currency=request.currency, original_amount_minor=request.amount_minor,
        )  # fmt: skip
        read = to_reverse_request(_wire(acquirer_reversal(reversal, "0420")), datetime.now(UTC))
        assert read.original_request_id == request.request_id
        assert read.reversal_id == reversal.reversal_id
        assert read.final_amount_minor == reversal.final_amount_minor
        assert read.reason == pb.TERMINAL_TIMEOUT


@pytest.mark.parametrize("kind", [pb.FORCED_POST, pb.OFFLINE_APPROVED])
def test_an_advice_is_read_as_the_same_request_and_kind(
    requests: list[pb.AuthorizeRequest], kind: int
) -> None:
    for request in requests[:50]:
        advice = pb.AcquirerAdvice(request=request, kind=kind, approval_code="V00001")  # type: ignore[arg-type]
        read = to_acquirer_advice(_wire(acquirer_advice(advice, "0121")), datetime.now(UTC))
        assert read.kind == kind
        assert read.request.request_id == request.request_id
        assert content_digest(read.request) == content_digest(request)
