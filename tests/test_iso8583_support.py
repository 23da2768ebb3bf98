"""Builders and loopback plumbing shared by the ISO 8583 tests (no tests here)."""

from __future__ import annotations

from authgw.iso8583 import Message, OriginalData, currency_numeric, replacement_amounts

PAN = "4111111111111111"
TRACK2 = "4111111111111111=28121010000012345678"
TRACK1 = "B4111111111111111^DUPONT/JEAN^2812101000000000000000123456"
PIN_BLOCK = bytes.fromhex("0412AC89ABCDEF67")
CHIP_DATA = bytes.fromhex("9F2608A1B2C3D4E5F60718" + "9F2701809F100706010A03A0B000")

AUTHORIZATION_FIELDS: dict[int, str | bytes] = {
    2: PAN,
    3: "000000",
    4: "000000012345",
    7: "1127143005",
    12: "153005",
    13: "1127",
    14: "2812",
    18: "5411",
    22: "051",
    32: "12345678901",
    35: TRACK2,
    41: "TERM0001",
    42: "MERCHANT0000001",
    43: "SUPERMARCHE DU COIN      PARIS        FR",
    45: TRACK1,
    49: currency_numeric("EUR"),
    52: PIN_BLOCK,
    55: CHIP_DATA,
}


def rrn_of(stan: str) -> str:
    """A retrieval reference number derived from the STAN, so tests can tell replies apart."""
    return f"633114{stan}"


def authorization(stan: str = "000123", mti: str = "0100", **changes: str | bytes) -> Message:
    """An authorization (0100/0200) with every field we use, or an advice when mti is 0120/0220."""
    fields: dict[int, str | bytes] = {**AUTHORIZATION_FIELDS, 11: stan, 37: rrn_of(stan)}
    if mti in ("0120", "0121", "0220", "0221"):
        fields.update({38: "A1B2C3", 39: "00"})
    fields.update({int(k.removeprefix("f")): v for k, v in changes.items()})
    return Message(mti, fields)


def reversal(stan: str = "000124", mti: str = "0400", final_amount_minor: int | None = None) -> Message:
    """A reversal (0400/0420/0421) of authorization 000123, partial when a final amount is given."""
    original = OriginalData("0100", "000123", "1127143005", acquirer_id="12345678901").encode()
    fields: dict[int, str | bytes] = {n: AUTHORIZATION_FIELDS[n] for n in (2, 3, 4, 7, 32, 41, 42, 49)} | {
        11: stan,
        37: rrn_of(stan),
        90: original,
    }
    if final_amount_minor is not None:
        fields[95] = replacement_amounts(final_amount_minor)
    return Message(mti, fields)


def echo(stan: str = "000001", code: str = "301") -> Message:
    """An 0800 network management request."""
    return Message("0800", {7: "1127143005", 11: stan, 70: code})
