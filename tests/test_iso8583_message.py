"""The message wrapper: reply MTIs, matching keys, replies, redaction, STANs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_iso8583_support import CHIP_DATA, PAN, PIN_BLOCK, TRACK1, TRACK2, authorization, echo, reversal

from authgw.iso8583 import (
    FormatError,
    MatchKey,
    Message,
    Spec,
    StanSequence,
    build_reply,
    error_match_key,
    reply_to_format_error,
)


@pytest.mark.parametrize(
    ("request_mti", "response_mti"),
    [
        ("0100", "0110"),
        ("0200", "0210"),
        ("0400", "0410"),
        ("0420", "0430"),
        ("0421", "0430"),
        ("0120", "0130"),
        ("0121", "0130"),
        ("0220", "0230"),
        ("0221", "0230"),
        ("0800", "0810"),
    ],
)
def test_each_request_mti_has_its_response_mti(request_mti: str, response_mti: str) -> None:
    """0100->0110, 0420/0421->0430, 0800->0810, ...: the table replies are built and matched with."""
    request = Message(request_mti, {})
    assert request.is_request
    assert request.response_mti == response_mti
    assert not Message(response_mti, {}).is_request


def test_a_response_has_no_response_mti() -> None:
    """Asking a reply (0110) for its reply MTI is a FormatError on the MTI."""
    with pytest.raises(FormatError, match="MTI: is not a request MTI"):
        _ = Message("0110", {}).response_mti


def test_financial_messages_match_on_stan_and_rrn_network_ones_on_stan_and_time() -> None:
    """A request and its reply share one key: (reply MTI, 11, 37), or (0810, 11, 7) for 0800."""
    request = authorization(stan="000777")
    assert request.match_key == MatchKey("0110", "000777", "633114000777")
    assert build_reply(request, "05").match_key == request.match_key
    assert echo(stan="000009").match_key == MatchKey("0810", "000009", "1127143005")
    assert build_reply(echo(stan="000009"), "00").match_key == echo(stan="000009").match_key
    assert authorization(stan="000777", mti="0200").match_key != request.match_key


def test_a_reply_echoes_the_keys_and_sets_39_and_38_but_no_sensitive_field() -> None:
    """The reply repeats 2, 3, 4, 7, 11, 32, 37, 41, 42, 49 and never track, PIN or chip data."""
    request = authorization()
    reply = build_reply(request, "00", approval_code="A1B2C3")
    assert reply.mti == "0110"
    assert reply.text(39) == "00" and reply.text(38) == "A1B2C3"
    for number in (2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49):
        assert reply.fields[number] == request.fields[number]
    assert not {14, 18, 22, 35, 43, 45, 52, 55} & reply.fields.keys()
    reversal_reply = build_reply(reversal(final_amount_minor=10), "00")
    assert reversal_reply.fields[90] == reversal(final_amount_minor=10).fields[90]
    assert reversal_reply.fields[95] == reversal(final_amount_minor=10).fields[95]


def test_a_request_that_failed_the_format_can_be_answered_30() -> None:
    """With its MTI and keys read, a broken 0100 gets an 0110 with 39=30 that encodes and matches."""
    error = FormatError(
        "must be digits only (n)",
        field="4",
        mti="0100",
        keys={7: "1127143005", 11: "000123", 37: "633114000123"},
    )
    reply = reply_to_format_error(error)
    assert reply is not None
    assert reply.mti == "0110" and reply.text(39) == "30"
    assert reply.match_key == MatchKey("0110", "000123", "633114000123") == error_match_key(error)
    assert Message.decode(reply.encode(Spec()), Spec()) == reply


@pytest.mark.parametrize(
    ("mti", "keys"),
    [
        (None, {11: "000123", 37: "633114000123"}),  # MTI unreadable
        ("0100", {37: "633114000123"}),  # no STAN
        ("0800", {11: "000123", 37: "633114000123"}),  # an echo matches on field 7, not 37
        ("0110", {11: "000123", 37: "633114000123"}),  # a reply is not answered
    ],
)
def test_no_30_reply_without_the_mti_and_keys(mti: str | None, keys: dict[int, str]) -> None:
    """A broken frame whose MTI or keys could not be read gets no reply: nothing could match it."""
    assert reply_to_format_error(FormatError("bad", field="4", mti=mti, keys=keys)) is None


def _leaks(text: str, pan: str, track2: str, track1: str, pin: bytes, chip: bytes) -> list[str]:
    found = []
    # Any 8 consecutive PAN digits, unless the other fields of the message hold them too.
    elsewhere = str(authorization().with_fields({2: "0000"}).redacted())
    if any(pan[i : i + 8] in text and pan[i : i + 8] not in elsewhere for i in range(len(pan) - 7)):
        found.append("PAN digits")
    for name, secret in (("track 2", track2), ("track 1", track1), ("PIN", pin.hex()), ("chip", chip.hex())):
        if secret.lower() in text.lower() or secret.upper() in text.upper():
            found.append(name)
    if repr(pin) in text or repr(chip) in text:
        found.append("raw bytes")
    return found


def test_redacted_shows_the_pan_last_four_and_drops_track_pin_and_chip() -> None:
    """redacted() keeps 4111's last four (****1111), drops 35/45/52/55 and the fields outside our spec."""
    message = authorization().with_fields({48: "PRIVATE DATA", 34: "EXTENDED PAN"})
    shown = message.redacted()
    assert shown["2"] == "****1111"
    assert shown["mti"] == "0100" and shown["11"] == "000123"
    assert not {"35", "45", "52", "55", "48", "34"} & shown.keys()
    text = f"{shown} {message!r} {message}"
    assert _leaks(text, PAN, TRACK2, TRACK1, PIN_BLOCK, CHIP_DATA) == []


@settings(max_examples=300, deadline=None)
@given(
    # A leading 4 keeps the PAN's digits from turning up by chance in the other numeric fields.
    pan=st.text("0123456789", min_size=11, max_size=18).map(lambda digits: f"4{digits}"),
    discretionary=st.text("0123456789", min_size=8, max_size=13),  # track 2 is at most 37
    pin=st.binary(min_size=8, max_size=8),
    chip=st.binary(min_size=4, max_size=255),
)
def test_no_log_form_of_a_message_leaks_card_data(
    pan: str, discretionary: str, pin: bytes, chip: bytes
) -> None:
    """For any PAN, track, PIN and chip data: redacted(), repr and str show at most the last four digits."""
    track2 = f"{pan}=2812{discretionary}"
    track1 = f"B{pan}^HOLDER/CARD^2812{discretionary}"
    message = authorization().with_fields({2: pan, 35: track2, 45: track1, 52: pin, 55: chip})
    decoded = Message.decode(message.encode(Spec()), Spec())
    shown = decoded.redacted()
    assert shown["2"] == f"****{pan[-4:]}"
    text = f"{shown} {decoded!r} {decoded}"
    assert _leaks(text, pan, track2, track1, pin, chip) == []


def test_a_message_cannot_be_changed_in_place() -> None:
    """Fields are read-only; with_fields returns a changed copy and leaves the original alone."""
    message = authorization()
    with pytest.raises(TypeError):
        message.fields[39] = "00"  # type: ignore[index]
    changed = message.with_fields({39: "00", 35: None})
    assert 35 in message and 39 not in message
    assert 35 not in changed and changed.text(39) == "00"


def test_text_and_binary_accessors_refuse_the_wrong_kind_or_a_missing_field() -> None:
    """text(52) and binary(2) and text(39) on an 0100 raise FormatError naming the field."""
    message = authorization()
    assert message.binary(52) == PIN_BLOCK
    for call, field in (
        (lambda: message.text(52), "52"),
        (lambda: message.binary(2), "2"),
        (lambda: message.text(39), "39"),
    ):
        with pytest.raises(FormatError) as info:
            call()
        assert info.value.field == field


def test_stans_run_from_000001_to_999999_and_wrap() -> None:
    """A STAN sequence gives six digits, never 000000, and wraps after 999999."""
    stans = StanSequence(start=999_998)
    assert [stans.next() for _ in range(4)] == ["999998", "999999", "000001", "000002"]
    assert StanSequence().next() == "000001"
