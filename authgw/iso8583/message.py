"""A typed ISO 8583 message: MTI and fields, the rules per MTI, reply matching, replies, redaction.

A message is immutable. Text fields are `str`, binary fields (52 PIN block, 55 chip data)
`bytes`. `Message.decode` and `Message.encode` both apply every rule (field types from the
spec, mandatory fields per MTI), so nothing malformed enters or leaves through this class.
Its `repr` is `redacted()`: a message can be logged by mistake without leaking a card.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple, NoReturn, TypeVar

from authgw.iso8583.elements import transmission_time
from authgw.iso8583.errors import FormatError
from authgw.iso8583.spec import FIELDS, KEY_FIELDS, Spec

__all__ = [
    "APPROVED",
    "FORMAT_ERROR",
    "SYSTEM_MALFUNCTION",
    "MatchKey",
    "Message",
    "NetworkCode",
    "StanSequence",
    "build_reply",
    "error_match_key",
    "network_request",
    "reply_to_format_error",
]

APPROVED = "00"  # field 39: approved or completed successfully
FORMAT_ERROR = "30"  # field 39: the request does not follow the format (answered by the wire layer)
SYSTEM_MALFUNCTION = "96"  # field 39: the request could not be processed here

_RESPONSE_MTI = {
    "0100": "0110",  # authorization request
    "0120": "0130",  # authorization advice (stand-in decision replayed)
    "0121": "0130",  # its repeat
    "0200": "0210",  # financial request
    "0220": "0230",  # financial advice
    "0221": "0230",
    "0400": "0410",  # reversal request
    "0420": "0430",  # reversal advice
    "0421": "0430",
    "0800": "0810",  # network management: sign-on, sign-off, echo
}
_RESPONSES = frozenset(_RESPONSE_MTI.values())

_AUTHORIZATION = frozenset({2, 3, 4, 7, 11, 12, 13, 18, 22, 32, 37, 41, 42, 49})
_REVERSAL = frozenset({2, 3, 4, 7, 11, 32, 37, 41, 42, 49, 90})
_MANDATORY: Mapping[str, frozenset[int]] = {
    "0100": _AUTHORIZATION,
    "0200": _AUTHORIZATION,
    **dict.fromkeys(("0120", "0121", "0220", "0221"), _AUTHORIZATION | {39}),
    **dict.fromkeys(("0400", "0420", "0421"), _REVERSAL),
    "0800": frozenset({7, 11, 70}),
    # Replies need only what matches them and the answer, so a reply to a request that
    # could not be read in full (30) is still a valid reply.
    **dict.fromkeys(("0110", "0130", "0210", "0230", "0410", "0430"), frozenset({11, 37, 39})),
    "0810": frozenset({7, 11, 39}),
}
# Messages that carry an issuer's (or stand-in's) decision: an approval needs its code (38).
_DECISIONS = frozenset({"0110", "0210", "0120", "0121", "0220", "0221"})
# What a reply repeats from its request; never track data, PIN block or chip data.
_ECHOED = (2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90, 95)
_DEFS = {fd.number: fd for fd in FIELDS}
_V = TypeVar("_V", str, bytes)


class NetworkCode(enum.StrEnum):
    """Field 70 of a network management message (08xx)."""

    SIGN_ON = "001"
    SIGN_OFF = "002"
    ECHO = "301"


class MatchKey(NamedTuple):
    """What pairs a reply with its request: the reply's MTI, the STAN, and RRN (or field 7 for 08xx)."""

    response_mti: str
    stan: str
    reference: str

    def __str__(self) -> str:
        return f"{self.response_mti}/{self.stan}/{self.reference}"


@dataclass(frozen=True, repr=False)
class Message:
    """One ISO 8583 message; build it, `encode` it, or `decode` one."""

    mti: str
    fields: Mapping[int, str | bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def __contains__(self, number: int) -> bool:
        return number in self.fields

    def __repr__(self) -> str:
        return f"Message({self.redacted()})"

    @classmethod
    def decode(cls, raw: bytes, spec: Spec) -> Message:
        """Decode one frame's payload and apply every rule; FormatError carries MTI and keys read."""
        mti, fields = spec.unpack(raw)
        message = cls(mti, fields)
        message.check()
        return message

    def encode(self, spec: Spec) -> bytes:
        """Apply every rule, then encode."""
        self.check()
        return spec.pack(self.mti, self.fields)

    def text(self, number: int) -> str:
        """A text field's value; FormatError when it is absent or binary."""
        return self._value(number, str)

    def binary(self, number: int) -> bytes:
        """A binary field's value; FormatError when it is absent or text."""
        return self._value(number, bytes)

    def _value(self, number: int, kind: type[_V]) -> _V:
        value = self.fields.get(number)
        if not isinstance(value, kind):
            rule = "is missing" if value is None else f"is not {'text' if kind is str else 'binary'}"
            raise FormatError(rule, field=str(number), mti=self.mti, keys=self.keys())
        return value

    def with_fields(self, changes: Mapping[int, str | bytes | None]) -> Message:
        """A copy with fields set, or removed where the new value is None."""
        fields = dict(self.fields)
        for number, value in changes.items():
            if value is None:
                fields.pop(number, None)
            else:
                fields[number] = value
        return Message(self.mti, fields)

    @property
    def is_request(self) -> bool:
        """Whether this MTI expects a reply (0100, 0200, 0400, advices, 0800)."""
        return self.mti in _RESPONSE_MTI

    @property
    def response_mti(self) -> str:
        """The MTI of the reply this request expects (0100 -> 0110, 0421 -> 0430, ...)."""
        response = _RESPONSE_MTI.get(self.mti)
        if response is None:
            raise FormatError("is not a request MTI we answer", field="MTI", mti=self.mti)
        return response

    @property
    def match_key(self) -> MatchKey:
        """The key a request waits on and its reply carries (STAN + RRN; STAN + field 7 for 08xx)."""
        expected = self.mti if self.mti in _RESPONSES else self.response_mti
        return MatchKey(expected, self.text(11), self.text(_reference_field(expected)))

    def keys(self) -> dict[int, str]:
        """The well-formed matching fields (7, 11, 37) present: what an error may carry."""
        found = {}
        for number in KEY_FIELDS:
            value = self.fields.get(number)
            if isinstance(value, str) and _DEFS[number].problem(value) is None:
                found[number] = value
        return found

    def check(self) -> None:
        """Apply the rules of this MTI: known MTI, mandatory fields, approval code, field 70."""
        mandatory = _MANDATORY.get(self.mti)
        if mandatory is None:
            self._fail("MTI", "is not a message type we use")
        missing = sorted(mandatory - self.fields.keys())
        if missing:
            self._fail(str(missing[0]), f"is mandatory in {self.mti}")
        if self.mti in _DECISIONS and self.fields.get(39) == APPROVED and 38 not in self.fields:
            self._fail("38", f"is mandatory in {self.mti} when 39 is {APPROVED} (approved)")
        if self.mti.startswith("08") and 70 in self.fields and self.fields[70] not in set(NetworkCode):
            self._fail("70", "must be 001 sign-on, 002 sign-off or 301 echo")

    def _fail(self, field_name: str, rule: str) -> NoReturn:
        mti = self.mti if field_name != "MTI" else None
        raise FormatError(rule, field=field_name, mti=mti, keys=self.keys())

    def redacted(self) -> dict[str, str]:
        """The message for logs and traces: PAN as its last four digits, track/PIN/chip data dropped.

        Fields outside our spec are dropped too: we cannot know what a peer put in them.
        """
        shown = {"mti": self.mti}
        for number in sorted(self.fields):
            definition = _DEFS.get(number)
            value = self.fields[number]
            if definition is None or definition.sensitive or not isinstance(value, str):
                continue
            shown[str(number)] = f"****{value[-4:]}" if number == 2 else value
        return shown


def build_reply(
    request: Message,
    response_code: str,
    *,
    approval_code: str | None = None,
    extra: Mapping[int, str | bytes] | None = None,
) -> Message:
    """The reply to `request`: its keys and echoed fields, 39, and 38 when given.

    Args:
        extra: further reply fields (54 balance, 55 issuer script), set last.
    """
    fields: dict[int, str | bytes] = {n: request.fields[n] for n in _ECHOED if n in request.fields}
    fields[39] = response_code
    if approval_code is not None:
        fields[38] = approval_code
    fields.update(extra or {})
    return Message(request.response_mti, fields)


def _reference_field(response_mti: str) -> int:
    """The field that, with the STAN, identifies a message: 7 for network management, else 37 (RRN)."""
    return 7 if response_mti.startswith("08") else 37


def error_match_key(error: FormatError) -> MatchKey | None:
    """The key a message that failed the format would match on, when its MTI and keys were read."""
    mti = error.mti or ""
    expected = mti if mti in _RESPONSES else _RESPONSE_MTI.get(mti)
    if expected is None:
        return None
    stan = error.keys.get(11)
    reference = error.keys.get(_reference_field(expected))
    if stan is None or reference is None:
        return None
    return MatchKey(expected, stan, reference)


def reply_to_format_error(error: FormatError) -> Message | None:
    """A 30 (format error) reply to a request that failed the format, or None when it cannot be matched."""
    key = error_match_key(error)
    if key is None or error.mti not in _RESPONSE_MTI:
        return None
    return Message(key.response_mti, {**error.keys, 39: FORMAT_ERROR})


def network_request(code: NetworkCode, stan: str, at: datetime) -> Message:
    """An 0800 network management request (sign-on, sign-off, echo) sent at `at`."""
    return Message("0800", {7: transmission_time(at), 11: stan, 70: code.value})


class StanSequence:
    """STANs 000001 to 999999, then again: one per link, since a STAN names a message on its link."""

    def __init__(self, start: int = 1) -> None:
        self._next = start

    def next(self) -> str:
        """The next STAN, six digits."""
        stan = self._next
        self._next = stan % 999_999 + 1
        return f"{stan:06d}"
