"""Edge validation of AuthorizeRequest and ReverseRequest: bad input never reaches an issuer.

Each rule raises InvalidRequest naming the field and the rule; the gRPC servicer maps
it to INVALID_ARGUMENT, the ISO 8583 listener to field 39 = 30 (it maps each message
to the same AuthorizeRequest and runs this same `validate`, so both edges refuse the
same values). The rules that need no protobuf (transaction currencies, assigned
countries, the window around the gateway's clock a sent time must fall in, card
expiry) live in authgw; the valid path raises nothing and allocates little.

The fields an ISO 8583 edge needs (processing code, expiry, STAN, RRN, local date and
time, POS entry mode, merchant name and city, sensitive data) are optional on gRPC:
empty means not sent. When present they follow the ISO 8583 field they stand for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from authgw.card_expiry import expiry_problem
from authgw.v1 import authorization_pb2 as pb
from authgw.validation import country_problem, currency_problem, sent_time_problem
from gateway.errors import InvalidRequest

__all__ = ["EdgeLimits", "luhn_valid", "validate", "validate_advice", "validate_reversal"]

_DAY_S = 86_400.0
_DOUBLED_DIGIT = bytes.maketrans(b"0123456789", b"0246813579")  # d -> digit sum of 2d, as a digit
_MAX_ID = 64
_MAX_ACQUIRER = 11  # ISO 8583 field 32: n..11
_KNOWN_CHANNELS = frozenset(v for v in pb.Channel.values() if v != pb.CHANNEL_UNSPECIFIED)
_KNOWN_AUTHORIZATION_TYPES = frozenset(pb.AuthorizationType.values())
_KNOWN_VERIFICATIONS = frozenset(pb.VerificationResult.values())
_TRACK2 = frozenset("0123456789=D")
_PIN_BLOCK_BYTES = 8  # ISO 8583 field 52: b 8
_MAX_TRACK2, _MAX_TRACK1, _MAX_CHIP_DATA = 37, 76, 255  # fields 35, 45, 55
_MAX_MERCHANT_NAME, _MAX_MERCHANT_CITY = 25, 13  # field 43: name 25, city 13
# Two-digit parts of a date or time: (first digit in the text, lowest, highest).
_MMDD = ((0, 1, 12), (2, 1, 31))
_HHMMSS = ((0, 0, 23), (2, 0, 59), (4, 0, 59))
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


def _digits(field: str, value: str, size: int, iso_field: int) -> None:
    """Empty (not sent) or exactly `size` decimal digits."""
    if value and (len(value) != size or not (value.isascii() and value.isdigit())):
        raise InvalidRequest(field, f"must be empty or {size} decimal digits (ISO 8583 field {iso_field})")


def _date_time(field: str, value: str, parts: tuple[tuple[int, int, int], ...], layout: str) -> None:
    """Empty (not sent) or digits following `layout` (MMDD, hhmmss) with every part in range."""
    if not value:
        return
    if len(value) != 2 * len(parts) or not (value.isascii() and value.isdigit()):
        raise InvalidRequest(field, f"must be empty or {layout}")
    for start, low, high in parts:
        if not low <= int(value[start : start + 2]) <= high:
            raise InvalidRequest(field, f"must be a valid {layout}")


def _acceptor_text(field: str, value: str, size: int) -> None:
    if len(value) > size or not _printable(value):
        raise InvalidRequest(field, f"must be at most {size} printable ASCII characters (ISO 8583 field 43)")


def _sensitive(data: pb.SensitiveData) -> None:
    """Only shapes are checked, never logged: a rule names the field, never its content."""
    if data.pin_block and len(data.pin_block) != _PIN_BLOCK_BYTES:
        raise InvalidRequest("sensitive.pin_block", f"must be empty or {_PIN_BLOCK_BYTES} bytes (field 52)")
    if len(data.track2) > _MAX_TRACK2 or not _TRACK2.issuperset(data.track2):
        raise InvalidRequest(
            "sensitive.track2", f"must be at most {_MAX_TRACK2} digits and '=' or 'D' (field 35)"
        )
    if len(data.track1) > _MAX_TRACK1 or not _printable(data.track1):
        raise InvalidRequest(
            "sensitive.track1", f"must be at most {_MAX_TRACK1} printable ASCII characters (field 45)"
        )
    if len(data.chip_data) > _MAX_CHIP_DATA:
        raise InvalidRequest("sensitive.chip_data", f"must be at most {_MAX_CHIP_DATA} bytes (field 55)")


def _transaction_data(req: pb.AuthorizeRequest) -> None:
    """The fields an authorization carries for issuers and the ISO 8583 edge (empty: not sent)."""
    _digits("processing_code", req.processing_code, 6, 3)
    if req.card_expiry:
        problem = expiry_problem(req.card_expiry)
        if problem is not None:
            raise InvalidRequest("card_expiry", problem)
    _digits("stan", req.stan, 6, 11)
    if req.stan == "000000":
        raise InvalidRequest("stan", "must be 000001-999999")
    if req.rrn and (len(req.rrn) != 12 or not (req.rrn.isascii() and req.rrn.isalnum())):
        raise InvalidRequest("rrn", "must be empty or 12 letters and digits (ISO 8583 field 37)")
    _date_time("local_date", req.local_date, _MMDD, "MMDD")
    _date_time("local_time", req.local_time, _HHMMSS, "hhmmss")
    _digits("pos_entry_mode", req.pos_entry_mode, 3, 22)
    _acceptor_text("merchant_name", req.merchant_name, _MAX_MERCHANT_NAME)
    _acceptor_text("merchant_city", req.merchant_city, _MAX_MERCHANT_CITY)
    if req.authorization_type not in _KNOWN_AUTHORIZATION_TYPES:
        raise InvalidRequest("authorization_type", "must be NORMAL or PRE_AUTHORIZATION")
    if req.HasField("verification"):
        checks = req.verification
        for name in ("card_verification_value", "chip_cryptogram", "pin"):
            if getattr(checks, name) not in _KNOWN_VERIFICATIONS:
                raise InvalidRequest(f"verification.{name}", "must be NOT_CHECKED, PASSED or FAILED")
    if req.HasField("sensitive"):
        _sensitive(req.sensitive)


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
    _transaction_data(req)
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


_ADVICE_KINDS = frozenset({pb.FORCED_POST, pb.OFFLINE_APPROVED})


def validate_advice(advice: pb.AcquirerAdvice, limits: EdgeLimits, now_s: float | None = None) -> None:
    """Raise InvalidRequest for the first rule an acquirer advice breaks (its request's named request.*)."""
    if not advice.HasField("request"):
        raise InvalidRequest("request", "is required (the transaction the acquirer approved)")
    try:
        validate(advice.request, limits, now_s)
    except InvalidRequest as exc:
        raise InvalidRequest(f"request.{exc.field}", exc.rule) from None
    if advice.kind not in _ADVICE_KINDS:
        raise InvalidRequest("kind", "must be FORCED_POST or OFFLINE_APPROVED")
    code = advice.approval_code
    if code and not (len(code) == 6 and code.isascii() and code.isalnum()):
        raise InvalidRequest("approval_code", "must be empty or 6 letters or digits (ISO 8583 field 38)")
