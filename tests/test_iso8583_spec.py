"""Our ISO 8583 spec through pyiso8583: round trips, wire encodings, and the rules that give FormatError."""

from __future__ import annotations

import copy

import pytest
from iso8583 import specs as library_specs
from test_iso8583_support import CHIP_DATA, PAN, PIN_BLOCK, authorization, echo, every_message_type

from authgw.iso8583 import BitmapEncoding, FormatError, Message, Spec, build_reply

SPECS = [Spec(BitmapEncoding.ASCII_HEX), Spec(BitmapEncoding.BINARY)]
MESSAGES = every_message_type()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.bitmap.value)
@pytest.mark.parametrize("mti", sorted(MESSAGES))
def test_every_message_type_round_trips(mti: str, spec: Spec) -> None:
    """Each MTI we use, with all its fields, decodes to the message that was encoded."""
    message = MESSAGES[mti]
    assert message.mti == mti
    decoded = Message.decode(message.encode(spec), spec)
    assert decoded == message
    assert decoded.fields == message.fields


def test_spec_differs_from_the_library_only_where_documented() -> None:
    """Our spec is pyiso8583's `default` with only the bitmap encoding and field 54's maximum changed."""
    library = library_specs.default
    for bitmap, changed in ((BitmapEncoding.BINARY, {"54"}), (BitmapEncoding.ASCII_HEX, {"54", "p", "1"})):
        ours = Spec(bitmap).library_spec()
        differing = {key for key in library if ours[key] != library[key]}
        assert differing == changed, bitmap
        assert ours["54"] == {**copy.deepcopy(library["54"]), "max_len": 120}
    assert Spec(BitmapEncoding.ASCII_HEX).library_spec()["p"] == library_specs.default_ascii["p"]


def test_ascii_bitmap_is_hex_text_and_binary_bitmap_is_eight_bytes() -> None:
    """The bitmap encoding is what the spec says: 16 hex characters or 8 bytes, the rest unchanged."""
    message = echo()  # fields 7, 11 and 70: a secondary bitmap is needed
    ascii_raw = message.encode(Spec(BitmapEncoding.ASCII_HEX))
    binary_raw = message.encode(Spec(BitmapEncoding.BINARY))
    assert ascii_raw[4:36] == b"8220000000000000" + b"0400000000000000"
    assert binary_raw[4:20] == bytes.fromhex("8220000000000000" + "0400000000000000")
    assert ascii_raw[36:] == binary_raw[20:] == b"1127143005000001301"


def test_binary_fields_are_raw_bytes_and_prefixes_count_data_bytes() -> None:
    """52 is 8 raw bytes; 55's LLL prefix counts bytes of chip data; 2's LL prefix counts digits."""
    raw = authorization().encode(Spec(BitmapEncoding.ASCII_HEX))
    assert b"16" + PAN.encode() in raw
    assert PIN_BLOCK in raw and PIN_BLOCK.hex().encode() not in raw.upper()
    assert f"{len(CHIP_DATA):03d}".encode() + CHIP_DATA in raw


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        (11, "12345", "exactly 6 characters"),
        (4, "00000001234A", "digits only"),
        (7, "1327143005", "valid MMDDhhmmss"),
        (14, "2813", "valid YYMM"),
        (2, "4111 1111", "digits only"),
        (2, "4" * 20, "1 to 19 characters"),
        (52, "0412AC89ABCDEF67", "give bytes"),
        (55, b"\x00" * 256, "1 to 255 bytes"),
        (37, "633114-00012", "letters and digits"),
        (41, "TERM\u00e9001", "printable ASCII"),
        (35, "4111111111111111^2812", "track 2 characters"),
        (54, "x" * 121, "1 to 120 characters"),
    ],
)
def test_a_bad_field_value_names_the_field_and_the_rule(field: int, value: str | bytes, rule: str) -> None:
    """Encoding a field that breaks its type or length raises FormatError naming both, never the value."""
    with pytest.raises(FormatError) as info:
        authorization().with_fields({field: value}).encode(Spec())
    assert info.value.field == str(field)
    assert rule in info.value.rule
    assert str(value) not in str(info.value)


def test_a_missing_mandatory_field_names_the_field_and_the_mti() -> None:
    """An 0100 without its amount is refused with 'field 4: is mandatory in 0100'."""
    with pytest.raises(FormatError, match="field 4: is mandatory in 0100") as info:
        authorization().with_fields({4: None}).encode(Spec())
    assert info.value.keys == {7: "1127143005", 11: "000123", 37: "633114000123"}


def test_an_approval_needs_its_approval_code() -> None:
    """An 0110 answering 00 needs field 38; a decline (05) does not; an 0810 00 does not."""
    approved = build_reply(authorization(), "00")
    with pytest.raises(FormatError, match="field 38: is mandatory in 0110 when 39 is 00"):
        approved.encode(Spec())
    build_reply(authorization(), "05").encode(Spec())
    build_reply(echo(), "00").encode(Spec())


def test_unknown_message_types_and_network_codes_are_refused() -> None:
    """An MTI we do not use, or an 0800 whose field 70 is not 001/002/301, is a FormatError."""
    with pytest.raises(FormatError, match="MTI: is not a message type we use"):
        Message("0500", {11: "000001"}).encode(Spec())
    with pytest.raises(FormatError, match="field 70: must be 001 sign-on, 002 sign-off or 301 echo"):
        echo(code="161").encode(Spec())


def test_decode_error_after_the_keys_carries_mti_and_keys() -> None:
    """A frame whose field 41 is cut short still yields its MTI and keys 7, 11, 37 (for a 30 reply)."""
    spec = Spec()
    raw = authorization().encode(spec)
    truncated = raw[: raw.index(b"TERM0001") + 4]
    with pytest.raises(FormatError) as info:
        Message.decode(truncated, spec)
    assert info.value.field == "41"
    assert info.value.mti == "0100"
    assert info.value.keys == {7: "1127143005", 11: "000123", 37: "633114000123"}


def test_a_bad_key_field_is_not_carried() -> None:
    """When the STAN itself is malformed, the error carries the other keys but not the STAN."""
    spec = Spec()
    raw = authorization().encode(spec).replace(b"000123153005", b"00A123153005", 1)
    with pytest.raises(FormatError) as info:
        Message.decode(raw, spec)
    assert info.value.field == "11"
    assert 11 not in info.value.keys
    assert info.value.keys[7] == "1127143005"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"0800822000000000000004000000000000001127143005000001301XX", "frame"),  # trailing bytes
        (b"08G0822000000000000004000000000000001127143005000001301", "MTI"),
        (b"08008220000000 0000 04000000000000001127143005000001301", "bitmap"),  # fromhex skips spaces
        (b"01004000000000000000 541111", "2"),  # " 5" is not a length prefix
        (b"01004000000000000000+541111", "2"),
        (b"0800" + b"8000000000000000" * 3 + b"1", "bitmap"),  # bit 65, then field 129
    ],
)
def test_decode_is_strict_about_the_envelope(raw: bytes, field: str) -> None:
    """Trailing bytes, a non-digit MTI, a spaced bitmap, a signed/spaced length or a tertiary bitmap fail."""
    with pytest.raises(FormatError) as info:
        Message.decode(raw, Spec())
    assert info.value.field == field
