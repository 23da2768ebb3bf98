"""Edge validation of AuthorizeRequest: bad input never reaches an issuer.

Each rule raises InvalidRequest naming the field and the rule; the servicer maps
it to INVALID_ARGUMENT.
"""

from __future__ import annotations

import pycountry

from authgw.v1 import authorization_pb2 as pb
from gateway.errors import InvalidRequest

__all__ = ["ISO_4217", "luhn_valid", "validate"]

# Loaded once from pycountry's ISO 4217 data (a maintained list, not hand-typed).
ISO_4217: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)

_MAX_ID = 64
_KNOWN_CHANNELS = frozenset(v for v in pb.Channel.values() if v != pb.CHANNEL_UNSPECIFIED)


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _printable(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _free_text(field: str, value: str) -> None:
    if len(value) > _MAX_ID or not _printable(value):
        raise InvalidRequest(field, f"must be at most {_MAX_ID} printable ASCII characters")


def validate(req: pb.AuthorizeRequest, max_amount_minor: int) -> None:
    """Raise InvalidRequest for the first rule the request breaks."""
    rid = req.request_id
    if not rid:
        raise InvalidRequest("request_id", "is required")
    if len(rid) > _MAX_ID or not _printable(rid):
        raise InvalidRequest("request_id", f"must be 1-{_MAX_ID} printable ASCII characters")

    pan = req.pan
    if not pan:
        raise InvalidRequest("pan", "is required")
    if not (pan.isascii() and pan.isdigit()) or not 12 <= len(pan) <= 19:
        raise InvalidRequest("pan", "must be 12-19 decimal digits")
    if not luhn_valid(pan):
        raise InvalidRequest("pan", "fails the Luhn check")

    if req.amount_minor <= 0:
        raise InvalidRequest("amount_minor", "must be greater than 0")
    if req.amount_minor > max_amount_minor:
        raise InvalidRequest("amount_minor", f"must be at most {max_amount_minor}")

    if req.currency not in ISO_4217:
        raise InvalidRequest("currency", "must be an ISO 4217 alphabetic code such as EUR")

    mcc = req.mcc
    if len(mcc) != 4 or not (mcc.isascii() and mcc.isdigit()):
        raise InvalidRequest("mcc", "must be exactly 4 decimal digits")

    if req.channel not in _KNOWN_CHANNELS:
        raise InvalidRequest("channel", "must be set to a known channel (POS_CHIP, ..., ATM)")

    country = req.merchant_country
    if country and (len(country) != 2 or not (country.isascii() and country.isupper())):
        raise InvalidRequest("merchant_country", "must be an ISO 3166-1 alpha-2 code such as FR")
    _free_text("merchant_id", req.merchant_id)
    _free_text("terminal_id", req.terminal_id)
