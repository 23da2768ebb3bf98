"""Edge validation of AuthorizeRequest and ReverseRequest: bad input never reaches an issuer.

Each rule raises InvalidRequest naming the field and the rule; the servicer maps
it to INVALID_ARGUMENT. The rules the ISO 8583 edge shares (transaction currencies,
assigned countries, the window around the gateway's clock a sent time must fall in)
live in authgw.validation; the valid path raises nothing and allocates little.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from authgw.v1 import authorization_pb2 as pb
from authgw.validation import country_problem, currency_problem, sent_time_problem
from gateway.errors import InvalidRequest

__all__ = ["EdgeLimits", "luhn_valid", "validate", "validate_reversal"]

_DAY_S = 86_400.0
_DOUBLED_DIGIT = bytes.maketrans(b"0123456789", b"0246813579")  # d -> digit sum of 2d, as a digit
_MAX_ID = 64
_MAX_ACQUIRER = 11  # ISO 8583 field 32: n..11
_KNOWN_CHANNELS = frozenset(v for v in pb.Channel.values() if v != pb.CHANNEL_UNSPECIFIED)
_KNOWN_REVERSAL_REASONS = frozenset(
    v for v in pb.ReversalReason.values() if v != pb.REVERSAL_REASON_UNSPECIFIED
)


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The bounds the config sets on what the edge accepts."""

    max_amount_minor: int = 100_000_000  # amount_minor and final_amount_minor at most this
    transmitted_at_window_s: float = _DAY_S  # transmitted_at within this of the gateway's clock


def luhn_valid(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check.

    The largest cost of validation, so it works on bytes in C instead of a Python loop per digit
    (0.4 µs instead of 1.3 µs for 16 digits): a translation table doubles every second digit from
    the right (the digit sum of the double), and the b"0" offset of each byte is removed at the end.
    """
    raw = digits.encode()
    doubled = raw[-2::-2].translate(_DOUBLED_DIGIT)
    return (sum(raw[-1::-2]) + sum(doubled) - 48 * len(raw)) % 10 == 0


def _printable(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _free_text(field: str, value: str) -> None:
    if len(value) > _MAX_ID or not _printable(value):
        raise InvalidRequest(field, f"must be at most {_MAX_ID} printable ASCII characters")


def _identifier(field: str, value: str) -> None:
    if not value:
        raise InvalidRequest(field, "is required")
    if len(value) > _MAX_ID or not _printable(value):
        raise InvalidRequest(field, f"must be 1-{_MAX_ID} printable ASCII characters")


def _acquirer(value: str) -> None:
    if not value:
        raise InvalidRequest("acquirer_id", "is required (the acquiring institution, ISO 8583 field 32)")
    if len(value) > _MAX_ACQUIRER or not (value.isascii() and value.isdigit()):
        raise InvalidRequest("acquirer_id", f"must be 1-{_MAX_ACQUIRER} decimal digits")


def _pan(pan: str) -> None:
    if not pan:
        raise InvalidRequest("pan", "is required")
    if not (pan.isascii() and pan.isdigit()) or not 12 <= len(pan) <= 19:
        raise InvalidRequest("pan", "must be 12-19 decimal digits")
    if not luhn_valid(pan):
        raise InvalidRequest("pan", "fails the Luhn check")


def _currency(code: str) -> None:
    problem = currency_problem(code)
    if problem is not None:
        raise InvalidRequest("currency", problem)


def _country(field: str, code: str) -> None:
    """Empty is allowed (unknown); anything else is an officially assigned alpha-2 code."""
    if not code:
        return
    problem = country_problem(code)
    if problem is not None:
        raise InvalidRequest(field, problem)


def _transmitted_at(
    req: pb.AuthorizeRequest | pb.ReverseRequest, limits: EdgeLimits, now_s: float | None
) -> None:
    """Absent: the gateway's time stands in for it. Present: near the gateway's clock."""
    if req.HasField("transmitted_at"):
        sent = req.transmitted_at
        now = time.time() if now_s is None else now_s
        problem = sent_time_problem(sent.seconds, sent.nanos, now, limits.transmitted_at_window_s)
        if problem is not None:
            raise InvalidRequest("transmitted_at", problem)


def validate(req: pb.AuthorizeRequest, limits: EdgeLimits, now_s: float | None = None) -> None:
    """Raise InvalidRequest for the first rule the request breaks (`now_s`: default time.time())."""
    _identifier("request_id", req.request_id)
    _acquirer(req.acquirer_id)
    _pan(req.pan)

    if req.amount_minor <= 0:
        raise InvalidRequest("amount_minor", "must be greater than 0")
    if req.amount_minor > limits.max_amount_minor:
        raise InvalidRequest("amount_minor", f"must be at most {limits.max_amount_minor}")
    _currency(req.currency)

    mcc = req.mcc
    if len(mcc) != 4 or not (mcc.isascii() and mcc.isdigit()):
        raise InvalidRequest("mcc", "must be exactly 4 decimal digits")

    if req.channel not in _KNOWN_CHANNELS:
        raise InvalidRequest("channel", "must be set to a known channel (POS_CHIP, ..., ATM)")

    _country("merchant_country", req.merchant_country)
    _free_text("merchant_id", req.merchant_id)
    _free_text("terminal_id", req.terminal_id)
    _transmitted_at(req, limits, now_s)
    if req.HasField("forwarded_at"):
        raise InvalidRequest(
            "forwarded_at", "is set by the gateway on each attempt: acquirers leave it empty"
        )


def validate_reversal(req: pb.ReverseRequest, limits: EdgeLimits, now_s: float | None = None) -> None:
    """Raise InvalidRequest for the first rule the reversal breaks (`now_s` as for validate)."""
    max_amount_minor = limits.max_amount_minor
    _acquirer(req.acquirer_id)
    _identifier("reversal_id", req.reversal_id)
    _identifier("original_request_id", req.original_request_id)
    _pan(req.pan)
    if req.final_amount_minor < 0:
        raise InvalidRequest("final_amount_minor", "must be >= 0 (0 reverses the whole amount)")
    if req.final_amount_minor > max_amount_minor:
        raise InvalidRequest("final_amount_minor", f"must be at most {max_amount_minor}")
    if req.original_amount_minor < 0:
        raise InvalidRequest("original_amount_minor", "must be >= 0 (0: not known)")
    if req.original_amount_minor and req.final_amount_minor > req.original_amount_minor:
        raise InvalidRequest("final_amount_minor", "must not exceed original_amount_minor")
    _currency(req.currency)
    if req.reason not in _KNOWN_REVERSAL_REASONS:
        raise InvalidRequest(
            "reason", "must be set to a known reason (CARDHOLDER_CANCEL, ..., PREAUTH_COMPLETION)"
        )
    _transmitted_at(req, limits, now_s)
