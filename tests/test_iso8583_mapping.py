"""ISO 8583 messages to the contract and back (gateway/edges/iso8583_mapping.py), field by field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_iso8583_support import CHIP_DATA, PIN_BLOCK, TRACK1, TRACK2, authorization, reversal

from authgw.iso8583 import Message
from authgw.v1 import authorization_pb2 as pb
from gateway.edges.iso8583_mapping import (
    MappingError,
    authorization_reply,
    iso_request_id,
    to_acquirer_advice,
    to_authorize_request,
    to_reverse_request,
    transmission_datetime,
)

NOV_27 = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # the support messages' field 7 is 1127143005


def test_the_request_id_is_acquirer_stan_and_transmission_time() -> None:
    """32 zero-filled to 11 digits, 11, 7: what the README documents and a reversal's 90 rebuilds."""
    request = to_authorize_request(authorization(stan="000123"), NOV_27)
    assert request.request_id == "12345678901:000123:1127143005"
    assert iso_request_id("1001", "000123", "1127143005") == "00000001001:000123:1127143005"


def test_a_reversal_rebuilds_the_original_request_id_from_field_90() -> None:
    """0400's 90 (original STAN and 7) with the reversal's own 32 names the original's request id."""
    original = to_authorize_request(authorization(stan="000123"), NOV_27)
    full = to_reverse_request(reversal(stan="000124"), NOV_27)
    assert full.original_request_id == original.request_id
    assert full.reversal_id == "12345678901:000124:1127143005"
    assert (full.final_amount_minor, full.original_amount_minor, full.reason) == (0, 12345, pb.OTHER)


def test_a_partial_reversal_carries_the_final_amount_of_field_95() -> None:
    """95's first 12 digits are the amount the transaction stands at; 0420 is a timeout reversal."""
    partial = to_reverse_request(reversal(mti="0420", final_amount_minor=7000), NOV_27)
    assert (partial.final_amount_minor, partial.reason) == (7000, pb.TERMINAL_TIMEOUT)


def test_a_reversal_of_another_acquirers_request_is_refused() -> None:
    """A non-zero acquirer in 90 other than 32 is a format error naming 90."""
    message = reversal()
    other = message.with_fields({90: message.text(90)[:20] + "00000000042" + "0" * 11})
    with pytest.raises(MappingError, match="field 90"):
        to_reverse_request(other, NOV_27)


def test_every_field_reaches_the_contract() -> None:
    """Each ISO field lands in its contract field; 52, 35, 45, 55 in `sensitive`, unchanged."""
    request = to_authorize_request(authorization(), NOV_27)
    assert (request.pan, request.amount_minor, request.currency, request.mcc) == (
        "4111111111111111", 12345, "EUR", "5411"
    )  # fmt: skip
    assert (request.channel, request.pos_entry_mode, request.card_expiry) == (pb.POS_CHIP, "051", "2812")
    assert (request.stan, request.rrn, request.local_date, request.local_time) == (
        "000123", "633114000123", "1127", "153005"
    )  # fmt: skip
    assert (request.merchant_name, request.merchant_city, request.merchant_country) == (
        "SUPERMARCHE DU COIN", "PARIS", "FR"
    )  # fmt: skip
    assert (request.terminal_id, request.merchant_id, request.acquirer_id) == (
        "TERM0001", "MERCHANT0000001", "12345678901"
    )  # fmt: skip
    sensitive = request.sensitive
    assert (sensitive.pin_block, sensitive.track2, sensitive.track1, sensitive.chip_data) == (
        PIN_BLOCK, TRACK2, TRACK1, CHIP_DATA
    )  # fmt: skip
    assert not request.pin_verified  # a PIN block is the issuer's to verify: stand-in never assumes it
    assert request.transmitted_at.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 27, 14, 30, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mode", "mcc", "channel"),
    [("051", "5411", pb.POS_CHIP), ("071", "5411", pb.POS_CONTACTLESS), ("901", "5411", pb.POS_MAGSTRIPE),
     ("810", "5411", pb.ECOMMERCE), ("012", "5411", pb.MOTO), ("051", "6011", pb.ATM)],
)  # fmt: skip
def test_field_22_and_the_mcc_give_the_channel(mode: str, mcc: str, channel: int) -> None:
    """PAN entry mode (22, positions 1-2) gives the channel; MCC 6011 is an ATM whatever was read."""
    message = authorization().with_fields({22: mode, 18: mcc})
    assert to_authorize_request(message, NOV_27).channel == channel


def test_an_entry_mode_we_do_not_map_is_a_format_error() -> None:
    """No guess: an unknown PAN entry mode names field 22."""
    with pytest.raises(MappingError, match="field 22"):
        to_authorize_request(authorization().with_fields({22: "991"}), NOV_27)


def test_field_7_takes_the_year_nearest_the_gateway_clock() -> None:
    """31 December seen on 1 January is last year's; 29 February exists only in a leap year."""
    new_year = datetime(2027, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert transmission_datetime("1231235959", new_year).year == 2026
    assert transmission_datetime("0229120000", datetime(2027, 3, 1, tzinfo=UTC)).year == 2028
    with pytest.raises(MappingError, match="field 7"):
        transmission_datetime("0230120000", new_year)


@pytest.mark.parametrize(("code", "kind"), [("00", pb.FORCED_POST), ("Y1", pb.OFFLINE_APPROVED)])
def test_an_acquirer_advice_says_how_it_was_approved(code: str, kind: int) -> None:
    """39 = 00 (with 38): forced by the merchant; Y1 / Y3: approved offline by the terminal."""
    message = authorization(mti="0120").with_fields({39: code})
    advice = to_acquirer_advice(message, NOV_27)
    assert (advice.kind, advice.approval_code) == (kind, "A1B2C3")


def test_an_advice_of_a_decline_is_refused() -> None:
    """An advice reports money already spent: a declined one (Z1, 05) names field 39."""
    message: Message = authorization(mti="0220").with_fields({39: "Z1", 38: None})
    with pytest.raises(MappingError, match="field 39"):
        to_acquirer_advice(message, NOV_27)


def test_the_reply_carries_the_approval_code_only_when_approved_and_the_balance() -> None:
    """0110: 39 and 38 when approved; 54 with the available balance in field 49's currency."""
    request = authorization()
    approved = pb.AuthorizeResponse(
        decision=pb.APPROVED, response_code="00", approval_code="XYZ123", available_balance_minor=12345
    )
    reply = authorization_reply(request, approved)
    assert (reply.mti, reply.text(39), reply.text(38), reply.text(54)) == (
        "0110",
        "00",
        "XYZ123",
        "0002978C000000012345",
    )
    declined = authorization_reply(request, pb.AuthorizeResponse(decision=pb.DECLINED, response_code="51"))
    assert (declined.text(39), 38 in declined, 54 in declined) == ("51", False, False)
