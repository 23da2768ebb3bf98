"""The fields an authorization carries for issuers and the ISO 8583 edge: each rule names the field."""

from __future__ import annotations

from typing import Any

import pytest

from authgw.v1 import authorization_pb2 as pb
from gateway.edges.validation import EdgeLimits, validate
from gateway.errors import InvalidRequest
from tests.gateway_fixtures import auth_request

LIMITS = EdgeLimits()

# One valid value of every transaction-data field, as an ISO 8583 acquirer sends them.
COMPLETE: dict[str, Any] = {
    "processing_code": "000000",
    "card_expiry": "2812",
    "stan": "000123",
    "rrn": "633114000123",
    "local_date": "1127",
    "local_time": "153005",
    "pos_entry_mode": "051",
    "merchant_name": "SUPERMARCHE DU COIN",
    "merchant_city": "PARIS",
    "authorization_type": pb.PRE_AUTHORIZATION,
    "verification": pb.Verification(pin=pb.PASSED, chip_cryptogram=pb.FAILED),
    "sensitive": pb.SensitiveData(
        pin_block=bytes(8),
        track2="4111111111111111=28121010000012345678",
        track1="B4111^X^2812",
        chip_data=b"\x9f",
    ),
}

BROKEN = [
    ("processing_code", "00000", "6 decimal digits"),
    ("processing_code", "00000A", "6 decimal digits"),
    ("card_expiry", "2813", "month 01-12"),
    ("card_expiry", "28-1", "4 digits"),
    ("stan", "12345", "6 decimal digits"),
    ("stan", "000000", "000001-999999"),
    ("rrn", "63311400012", "12 letters and digits"),
    ("rrn", "63311400012-", "12 letters and digits"),
    ("local_date", "1332", "valid MMDD"),
    ("local_date", "0100", "valid MMDD"),
    ("local_date", "11/2", "MMDD"),
    ("local_time", "245959", "valid hhmmss"),
    ("local_time", "235960", "valid hhmmss"),
    ("pos_entry_mode", "05", "3 decimal digits"),
    ("merchant_name", "N" * 26, "at most 25"),
    ("merchant_name", "CAF\u00c9", "printable ASCII"),
    ("merchant_city", "C" * 14, "at most 13"),
    ("authorization_type", 7, "NORMAL or PRE_AUTHORIZATION"),
]


def test_every_transaction_field_accepted_when_valid() -> None:
    """A request carrying every field, each valid, passes; so does one carrying none (empty: not sent)."""
    validate(auth_request(**COMPLETE), LIMITS)
    validate(auth_request(), LIMITS)


@pytest.mark.parametrize(("field", "value", "rule"), BROKEN)
def test_a_broken_field_is_named_with_its_rule(field: str, value: Any, rule: str) -> None:
    """Each broken value is refused naming the field and the rule it breaks."""
    with pytest.raises(InvalidRequest) as caught:
        validate(auth_request(**{**COMPLETE, field: value}), LIMITS)
    assert str(caught.value).startswith(f"{field}: ")
    assert rule in str(caught.value)


@pytest.mark.parametrize(
    ("field", "data", "rule"),
    [
        ("sensitive.pin_block", {"pin_block": bytes(7)}, "8 bytes"),
        ("sensitive.track2", {"track2": "4111^1111"}, "'=' or 'D'"),
        ("sensitive.track2", {"track2": "4" * 38}, "at most 37"),
        ("sensitive.track1", {"track1": "B\n"}, "printable"),
        ("sensitive.chip_data", {"chip_data": bytes(256)}, "at most 255"),
    ],
)
def test_sensitive_data_is_checked_by_shape_and_never_quoted(
    field: str, data: dict[str, Any], rule: str
) -> None:
    """Sensitive fields are refused by length and alphabet; the error never carries their content."""
    request = auth_request(sensitive=pb.SensitiveData(**data))
    with pytest.raises(InvalidRequest) as caught:
        validate(request, LIMITS)
    message = str(caught.value)
    assert message.startswith(f"{field}: ") and rule in message
    assert "4111^1111" not in message and "4444" not in message


def test_a_verification_result_outside_the_enum_is_refused() -> None:
    """verification.pin with a number the enum does not know is named."""
    request = auth_request(verification=pb.Verification(pin=9))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^verification\.pin: "):
        validate(request, LIMITS)
