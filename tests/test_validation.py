"""Edge validation: every rule gives INVALID_ARGUMENT naming the field, over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.app import Gateway
from gateway.edges.validation import EdgeLimits, luhn_valid, validate
from gateway.errors import InvalidRequest
from tests.gateway_fixtures import auth_request, gateway_config


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[pb_grpc.AuthorizationStub]:
    """A gateway whose only pool points at a closed port (validation must answer first)."""
    gw = Gateway(
        gateway_config([("primary", ["127.0.0.1:1"])], extra={"gateway": {"max_amount_minor": 500_000}})
    )
    await gw.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        yield pb_grpc.AuthorizationStub(channel)
    await gw.close()


async def assert_invalid(stub: pb_grpc.AuthorizationStub, field: str, rule: str, **overrides: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Authorize(auth_request(**overrides), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert details.startswith(f"{field}:"), details
    assert rule in details


async def test_request_id_required(stub: pb_grpc.AuthorizationStub) -> None:
    """An empty request_id is rejected as required."""
    await assert_invalid(stub, "request_id", "required", request_id="")


async def test_request_id_too_long(stub: pb_grpc.AuthorizationStub) -> None:
    """A request_id of 65 characters is rejected."""
    await assert_invalid(stub, "request_id", "1-64 printable", request_id="r" * 65)


async def test_request_id_not_printable(stub: pb_grpc.AuthorizationStub) -> None:
    """A request_id with a control character is rejected."""
    await assert_invalid(stub, "request_id", "printable", request_id="abc\x07")


async def test_pan_required(stub: pb_grpc.AuthorizationStub) -> None:
    """An empty PAN is rejected as required."""
    await assert_invalid(stub, "pan", "required", pan="")


async def test_pan_not_digits(stub: pb_grpc.AuthorizationStub) -> None:
    """A PAN with letters is rejected."""
    await assert_invalid(stub, "pan", "12-19 decimal digits", pan="4111abcd11111111")


async def test_pan_too_short(stub: pb_grpc.AuthorizationStub) -> None:
    """An 11-digit PAN is rejected."""
    await assert_invalid(stub, "pan", "12-19 decimal digits", pan="41111111111")


async def test_pan_too_long(stub: pb_grpc.AuthorizationStub) -> None:
    """A 20-digit PAN is rejected."""
    await assert_invalid(stub, "pan", "12-19 decimal digits", pan="4" * 20)


async def test_pan_luhn(stub: pb_grpc.AuthorizationStub) -> None:
    """A PAN failing the Luhn check is rejected."""
    await assert_invalid(stub, "pan", "Luhn", pan="4111111111111112")


async def test_amount_zero(stub: pb_grpc.AuthorizationStub) -> None:
    """A zero amount is rejected."""
    await assert_invalid(stub, "amount_minor", "greater than 0", amount_minor=0)


async def test_amount_negative(stub: pb_grpc.AuthorizationStub) -> None:
    """A negative amount is rejected."""
    await assert_invalid(stub, "amount_minor", "greater than 0", amount_minor=-5)


async def test_amount_above_maximum(stub: pb_grpc.AuthorizationStub) -> None:
    """An amount above the configured maximum is rejected."""
    await assert_invalid(stub, "amount_minor", "at most 500000", amount_minor=500_001)


async def test_currency_unknown(stub: pb_grpc.AuthorizationStub) -> None:
    """A currency not in ISO 4217 is rejected."""
    await assert_invalid(stub, "currency", "ISO 4217", currency="EUX")


async def test_currency_lower_case(stub: pb_grpc.AuthorizationStub) -> None:
    """A lower-case currency code is rejected (the standard is upper case)."""
    await assert_invalid(stub, "currency", "ISO 4217", currency="eur")


async def test_mcc_not_four_digits(stub: pb_grpc.AuthorizationStub) -> None:
    """An MCC of 3 digits is rejected."""
    await assert_invalid(stub, "mcc", "4 decimal digits", mcc="541")


async def test_mcc_letters(stub: pb_grpc.AuthorizationStub) -> None:
    """An MCC with letters is rejected."""
    await assert_invalid(stub, "mcc", "4 decimal digits", mcc="54A1")


async def test_channel_unset(stub: pb_grpc.AuthorizationStub) -> None:
    """A request without channel is rejected."""
    await assert_invalid(stub, "channel", "known channel", channel=pb.CHANNEL_UNSPECIFIED)


async def test_merchant_country_format(stub: pb_grpc.AuthorizationStub) -> None:
    """A merchant country that is not two upper-case letters is rejected."""
    await assert_invalid(stub, "merchant_country", "alpha-2", merchant_country="FRA")


async def test_merchant_id_too_long(stub: pb_grpc.AuthorizationStub) -> None:
    """A merchant_id longer than 64 characters is rejected."""
    await assert_invalid(stub, "merchant_id", "at most 64", merchant_id="m" * 65)


async def test_gateway_survives_invalid_input(stub: pb_grpc.AuthorizationStub) -> None:
    """After hostile input the gateway still answers a valid request (91: its pool is down)."""
    await assert_invalid(stub, "pan", "12-19", pan="\x00" * 50)
    resp = await stub.Authorize(auth_request(request_id="after-hostile"), timeout=5)
    assert resp.response_code == "91"
    assert resp.standin_reason == pb.ALL_POOLS_FAILED


def test_invalid_message_names_field() -> None:
    """InvalidRequest carries the field and the rule separately."""
    with pytest.raises(InvalidRequest) as info:
        validate(auth_request(mcc="1"), EdgeLimits(100_000))
    assert (info.value.field, info.value.rule) == ("mcc", "must be exactly 4 decimal digits")


@given(st.text(alphabet="0123456789", min_size=12, max_size=19))
def test_luhn_check_digit_property(body: str) -> None:
    """Appending the computed check digit always gives a Luhn-valid number, and only that digit does."""
    valid = [d for d in "0123456789" if luhn_valid(body + d)]
    assert len(valid) == 1


@given(st.integers(min_value=1, max_value=10**12))
def test_amount_limit_property(amount: int) -> None:
    """Validation accepts an amount exactly when 0 < amount <= max."""
    limit = 10**9
    try:
        validate(auth_request(amount_minor=amount), EdgeLimits(limit))
    except InvalidRequest as exc:
        assert exc.field == "amount_minor"
        assert amount > limit
    else:
        assert amount <= limit
