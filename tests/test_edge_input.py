"""Bad input at the edge, over real gRPC: refused with the right status, never forwarded, never a crash.

Two in-process gateways: one routes to a recording issuer host (a real grpc.aio server that keeps
the bytes it receives), one has no live issuer and decides in stand-in (the session's Redis).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.unknown_fields import UnknownFieldSet
from test_edge_support import (
    AUTHORIZE,
    DEADLINE_S,
    FIXED32,
    FIXED64,
    REVERSE,
    VARINT,
    RecordingIssuer,
    bytes_field,
    raw_call,
    recording_issuer,
    reverse_request,
    running_gateway,
    sent_at,
    standin_doc,
    valid_request_bytes,
    varint,
    wire_field,
)

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from chaos.processes import ManagedProcess
from gateway.app import Gateway
from tests.gateway_fixtures import auth_request, gateway_config

LIMIT = 16 * 1024  # the default max_message_bytes
DAY_S = 86_400.0
OK, INVALID = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
async def issuer() -> AsyncIterator[RecordingIssuer]:
    """The recording issuer host behind the first gateway."""
    async with recording_issuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
async def channel(issuer: RecordingIssuer) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a gateway whose only pool is the recording issuer (default limits)."""
    gateway = Gateway(gateway_config([("primary", [issuer.address])]))
    await gateway.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel
    await gateway.close()


@pytest.fixture(scope="module")
async def standin_channel(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a gateway with every issuer down: valid requests are decided in stand-in."""
    workdir = tmp_path_factory.mktemp("edge-standin")
    doc = standin_doc(workdir, redis_server.port, "gw-edge-si")
    async with (
        running_gateway(doc, str(workdir / "gateway.toml")) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
    ):
        yield channel


@pytest.fixture(params=["issuers", "stand-in"])
def any_channel(request: pytest.FixtureRequest) -> grpc.aio.Channel:
    """Each gateway in turn: the same rules hold whoever would decide."""
    name = "channel" if request.param == "issuers" else "standin_channel"
    channel: grpc.aio.Channel = request.getfixturevalue(name)
    return channel


def _rid(tag: str) -> str:
    return f"{tag}-{time.monotonic_ns()}"


def padded(request_id: str, total: int) -> bytes:
    """A valid request padded with two unknown fields to exactly `total` bytes."""
    data = valid_request_bytes(request_id)
    data += bytes_field(9999, b"p" * (total - len(data) - 16))  # tag 3 bytes, length 2-3 bytes
    data += bytes_field(9998, b"q" * (total - len(data) - 4))  # tag 3 bytes, length 1 byte
    assert len(data) == total
    return data


async def test_undecodable_bytes_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    """Bytes that are no message: INVALID_ARGUMENT on both methods; the gateway answers the next request."""
    garbage = (b"\xff\xff\xff\xff", b"\x0a\x80", wire_field(1, 7, b""), b"\x12\x05ab")
    for method in (AUTHORIZE, REVERSE):
        for data in garbage:
            code, details = await raw_call(channel, method, data)
            assert (code, method) == (INVALID, method), details
            assert "do not decode" in str(details)
    code, answer = await raw_call(channel, AUTHORIZE, valid_request_bytes(_rid("after-garbage")))
    assert code == OK
    assert isinstance(answer, bytes) and pb.AuthorizeResponse.FromString(answer).response_code == "00"


async def test_message_at_the_limit_is_answered(channel: grpc.aio.Channel, issuer: RecordingIssuer) -> None:
    """A request of exactly max_message_bytes is decided, and its padding (unknown) is not forwarded."""
    rid = _rid("at-limit")
    code, answer = await raw_call(channel, AUTHORIZE, padded(rid, LIMIT))
    assert code == OK, answer
    assert isinstance(answer, bytes) and pb.AuthorizeResponse.FromString(answer).response_code == "00"
    assert len(issuer.authorizations[rid]) < 1024


async def test_message_over_the_limit_is_resource_exhausted(
    channel: grpc.aio.Channel, issuer: RecordingIssuer
) -> None:
    """One byte over max_message_bytes: RESOURCE_EXHAUSTED, nothing forwarded, the gateway still serves."""
    rid = _rid("over-limit")
    code, details = await raw_call(channel, AUTHORIZE, padded(rid, LIMIT + 1))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert rid not in issuer.authorizations
    code, _ = await raw_call(channel, AUTHORIZE, valid_request_bytes(_rid("after-oversize")))
    assert code == OK


async def test_unknown_fields_never_reach_the_issuer(
    channel: grpc.aio.Channel, issuer: RecordingIssuer
) -> None:
    """Unknown fields of every wire type, top level and nested, are dropped: the issuer's bytes hold none."""
    rid = _rid("unknown-fields")
    known = auth_request(request_id=rid, sensitive=pb.SensitiveData(track2="4111111111111111=2912"))
    smuggled = (
        bytes_field(9999, b"TOP-MARKER")
        + wire_field(5000, VARINT, varint(123_456_789))
        + wire_field(6000, FIXED32, b"FX32")
        + wire_field(6001, FIXED64, b"FIXED-64")
        + bytes_field(25, bytes_field(77, b"NESTED-MARKER"))  # merged into `sensitive`
        + bytes_field(24, wire_field(99, VARINT, varint(7)))  # merged into `verification`
    )
    sent = known.SerializeToString() + smuggled
    assert len(UnknownFieldSet(pb.AuthorizeRequest.FromString(sent))) == 4  # the bytes do carry them
    code, answer = await raw_call(channel, AUTHORIZE, sent)
    assert code == OK, answer
    received = issuer.authorizations[rid]
    for marker in (b"TOP-MARKER", b"NESTED-MARKER", b"FX32", b"FIXED-64"):
        assert marker not in received
    forwarded = pb.AuthorizeRequest.FromString(received)
    assert len(UnknownFieldSet(forwarded)) == 0
    assert len(UnknownFieldSet(forwarded.sensitive)) == len(UnknownFieldSet(forwarded.verification)) == 0
    assert forwarded.sensitive.track2 == known.sensitive.track2 and forwarded.pan == known.pan


def _timestamp(seconds: int, nanos: int = 0) -> dict[str, Any]:
    return {"transmitted_at": {"seconds": seconds, "nanos": nanos}}


_NOW = int(time.time())
BAD_AUTHORIZATIONS = [
    pytest.param("currency", {"currency": "XXX"}, id="XXX"),
    pytest.param("currency", {"currency": "XTS"}, id="XTS"),
    pytest.param("currency", {"currency": "XAU"}, id="XAU"),
    pytest.param("currency", {"currency": "XDR"}, id="XDR"),
    pytest.param("currency", {"currency": "CLF"}, id="CLF"),
    pytest.param("merchant_country", {"merchant_country": "ZZ"}, id="ZZ"),
    pytest.param("merchant_country", {"merchant_country": "F1"}, id="F1"),
    pytest.param("merchant_country", {"merchant_country": "XK"}, id="XK"),
    # 0001-01-01, the earliest a Timestamp may hold; then before it (no datetime can hold it)
    pytest.param("transmitted_at", _timestamp(-62_135_596_800), id="year-1"),
    pytest.param("transmitted_at", _timestamp(-(10**12)), id="before-year-1"),
    pytest.param("transmitted_at", _timestamp(_NOW - 2 * int(DAY_S)), id="two-days-ago"),
    pytest.param("transmitted_at", _timestamp(_NOW + 2 * int(DAY_S)), id="in-two-days"),
    pytest.param("transmitted_at", _timestamp(253_402_300_799), id="year-9999"),
    pytest.param("transmitted_at", _timestamp(10**12), id="after-year-9999"),
    pytest.param("transmitted_at", _timestamp(_NOW, -1), id="negative-nanos"),
    pytest.param("transmitted_at", _timestamp(_NOW, 10**9), id="a-second-of-nanos"),
    pytest.param("forwarded_at", {"forwarded_at": {"seconds": _NOW}}, id="forwarded_at"),
]


@pytest.mark.parametrize(("field", "overrides"), BAD_AUTHORIZATIONS)
async def test_bad_field_is_invalid_argument(
    any_channel: grpc.aio.Channel, issuer: RecordingIssuer, field: str, overrides: dict[str, Any]
) -> None:
    """Each hostile value: INVALID_ARGUMENT naming its field, issuers up or in stand-in; none forwarded."""
    rid = _rid("bad")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await pb_grpc.AuthorizationStub(any_channel).Authorize(
            auth_request(request_id=rid, **overrides), timeout=DEADLINE_S
        )
    assert info.value.code() == INVALID, info.value.details()
    assert (info.value.details() or "").startswith(f"{field}: ")
    assert rid not in issuer.authorizations


@pytest.mark.parametrize("offset_s", [-6 * 3600, 6 * 3600])
async def test_sent_time_inside_the_window_is_decided(any_channel: grpc.aio.Channel, offset_s: float) -> None:
    """Six hours either way of the gateway's clock is within the default day: decided (issuer or stand-in)."""
    request = auth_request(request_id=_rid("in-window"), **sent_at(offset_s))
    response = await pb_grpc.AuthorizationStub(any_channel).Authorize(request, timeout=DEADLINE_S)
    assert response.response_code == "00"


async def test_standin_decides_a_valid_request(standin_channel: grpc.aio.Channel) -> None:
    """The stand-in gateway really is in stand-in: the refusals above were not the issuer path's."""
    request = auth_request(request_id=_rid("si-valid"), **sent_at(-60))
    response = await pb_grpc.AuthorizationStub(standin_channel).Authorize(request, timeout=DEADLINE_S)
    assert (response.source, response.response_code) == (pb.STAND_IN, "00")


BAD_REVERSALS = [
    pytest.param("currency", {"currency": "XXX"}, id="XXX"),
    pytest.param("currency", {"currency": "XPT"}, id="XPT"),
    pytest.param("transmitted_at", _timestamp(-(10**12)), id="before-year-1"),
    pytest.param("transmitted_at", _timestamp(_NOW - 2 * int(DAY_S)), id="two-days-ago"),
    pytest.param("transmitted_at", _timestamp(_NOW + 2 * int(DAY_S)), id="in-two-days"),
    pytest.param("transmitted_at", _timestamp(_NOW, -5), id="negative-nanos"),
]


@pytest.mark.parametrize(("field", "overrides"), BAD_REVERSALS)
async def test_bad_reversal_field_is_invalid_argument(
    any_channel: grpc.aio.Channel, issuer: RecordingIssuer, field: str, overrides: dict[str, Any]
) -> None:
    """Reversals follow the same currency and time rules, whoever would take them."""
    rvid = _rid("bad-rv")
    request = reverse_request(reversal_id=rvid, **overrides)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await pb_grpc.AuthorizationStub(any_channel).Reverse(request, timeout=DEADLINE_S)
    assert info.value.code() == INVALID, info.value.details()
    assert (info.value.details() or "").startswith(f"{field}: ")
    assert rvid not in issuer.reversals


async def test_configured_window_applies(issuer: RecordingIssuer, tmp_path: Path) -> None:
    """transmitted_at_window = "1m": two minutes late is refused, thirty seconds late is decided."""
    cfg = gateway_config([("primary", [issuer.address])], extra={"gateway": {"transmitted_at_window": "1m"}})
    gateway = Gateway(cfg)
    await gateway.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = pb_grpc.AuthorizationStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Authorize(
                    auth_request(request_id=_rid("late"), **sent_at(-120)), timeout=DEADLINE_S
                )
            assert (info.value.details() or "").startswith("transmitted_at: must be within 1m")
            ok = await stub.Authorize(
                auth_request(request_id=_rid("on-time"), **sent_at(-30)), timeout=DEADLINE_S
            )
            assert ok.response_code == "00"
    finally:
        await gateway.close()
