"""Single data elements: currency (49), balance (54), reversal data (90, 95), location (43), time (7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from test_iso8583_support import authorization, reversal

from authgw.iso8583 import (
    AdditionalAmount,
    FormatError,
    MerchantLocation,
    Message,
    OriginalData,
    Spec,
    available_balance,
    build_reply,
    currency_alpha3,
    currency_numeric,
    find_available_balance,
    format_additional_amounts,
    local_date_time,
    parse_additional_amounts,
    parse_amount,
    parse_final_amount,
    transmission_time,
)


@pytest.mark.parametrize(
    ("alpha", "numeric"), [("EUR", "978"), ("USD", "840"), ("JPY", "392"), ("CHF", "756")]
)
def test_currency_travels_as_its_iso_4217_numeric_code(alpha: str, numeric: str) -> None:
    """Field 49 carries the numeric code of the alpha-3 currency, and reads back to the same alpha-3."""
    field_49 = currency_numeric(alpha)
    assert field_49 == numeric
    decoded = Message.decode(authorization().with_fields({49: field_49}).encode(Spec()), Spec())
    assert currency_alpha3(decoded.text(49)) == alpha


@pytest.mark.parametrize("bad", ["EURO", "ZZZ", ""])
def test_an_unknown_alpha_currency_is_a_format_error_on_field_49(bad: str) -> None:
    """A currency that is not ISO 4217 alphabetic gives FormatError naming field 49."""
    with pytest.raises(FormatError) as info:
        currency_numeric(bad)
    assert info.value.field == "49"


@pytest.mark.parametrize("bad", ["000", "97", "9780"])
def test_an_unknown_numeric_currency_is_a_format_error_on_field_49(bad: str) -> None:
    """A field 49 that names no ISO 4217 currency gives FormatError naming field 49."""
    with pytest.raises(FormatError) as info:
        currency_alpha3(bad)
    assert info.value.field == "49"


def test_available_balance_entry_has_the_documented_layout() -> None:
    """Account 2, amount type 02, currency 3, sign C/D, 12 digits: 20 characters per entry."""
    assert available_balance(12_345, "EUR").encode() == "0002978C000000012345"
    assert available_balance(-500, "USD", account_type="20").encode() == "2002840D000000000500"


def test_the_balance_returned_in_an_0110_is_found_again() -> None:
    """An issuer's ledger and available balances in field 54 of an 0110 decode to the available one."""
    ledger = AdditionalAmount("00", "01", "978", 99_000)
    field_54 = format_additional_amounts([ledger, available_balance(12_345, "EUR")])
    reply = build_reply(authorization(), "00", approval_code="A1B2C3", extra={54: field_54})
    decoded = Message.decode(reply.encode(Spec()), Spec())
    entries = parse_additional_amounts(decoded.text(54))
    assert entries[0] == ledger
    assert find_available_balance(entries) == AdditionalAmount("00", "02", "978", 12_345)
    assert find_available_balance(entries[:1]) is None


@pytest.mark.parametrize("bad", ["", "0002978C00000001234", "0002978X000000012345", "0002978C00000001234A"])
def test_a_malformed_field_54_is_a_format_error(bad: str) -> None:
    """A field 54 that is not whole, well-formed 20-character entries gives FormatError on 54."""
    with pytest.raises(FormatError) as info:
        parse_additional_amounts(bad)
    assert info.value.field == "54"


def test_a_partial_reversal_carries_the_final_amount_in_field_95() -> None:
    """An 0400 with field 95 decodes to its final amount, and field 90 to the original's keys."""
    spec = Spec()
    decoded = Message.decode(reversal(final_amount_minor=7_000).encode(spec), spec)
    assert decoded.text(95)[:12] == "000000007000"
    assert parse_final_amount(decoded.text(95)) == 7_000
    assert parse_amount(decoded.text(4)) == 12_345  # field 4 keeps the original amount
    original = OriginalData.parse(decoded.text(90))
    assert (original.mti, original.stan, original.transmitted) == ("0100", "000123", "1127143005")
    assert original.acquirer_id == "12345678901"
    assert original.forwarding_id == "00000000000"


def test_a_full_reversal_has_no_field_95() -> None:
    """Without a final amount, the reversal is full: field 95 is absent."""
    assert 95 not in reversal()


@pytest.mark.parametrize("bad", ["0000000070", "00000000700A000000000000C00000000C00000000"])
def test_a_malformed_field_95_is_a_format_error(bad: str) -> None:
    """Field 95 must be 42 characters whose first 12 are digits."""
    with pytest.raises(FormatError) as info:
        parse_final_amount(bad)
    assert info.value.field == "95"


def test_original_data_refuses_what_does_not_fit_42_digits() -> None:
    """A field 90 with a 7-digit STAN, or a non-digit identifier, is refused."""
    with pytest.raises(FormatError):
        OriginalData("0100", "0001234", "1127143005").encode()
    with pytest.raises(FormatError):
        OriginalData("0100", "000123", "1127143005", acquirer_id="BANK").encode()


def test_merchant_location_is_padded_cut_and_parsed_back() -> None:
    """Field 43 is name 25 + city 13 + country 2, space-padded; a long name is cut to 25."""
    text = MerchantLocation("BOULANGERIE DE LA GARE DU NORD", "PARIS", "fr").encode()
    assert len(text) == 40
    assert text == "BOULANGERIE DE LA GARE DU" + "PARIS        " + "FR"
    assert MerchantLocation.parse(text) == MerchantLocation("BOULANGERIE DE LA GARE DU", "PARIS", "FR")
    with pytest.raises(FormatError):
        MerchantLocation("SHOP", "PARIS", "FRA").encode()


def test_transmission_time_is_written_in_utc() -> None:
    """Field 7 is MMDDhhmmss in UTC whatever the zone given; a naive datetime is refused."""
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 11, 27, 15, 30, 5, tzinfo=paris)
    assert transmission_time(at) == "1127143005"
    assert local_date_time(at) == ("153005", "1127")
    assert transmission_time(datetime(2026, 1, 1, 0, 30, tzinfo=paris)) == "1231233000"
    with pytest.raises(FormatError):
        transmission_time(datetime(2026, 11, 27, 15, 30))
    assert transmission_time(datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)) == "0228235959"
