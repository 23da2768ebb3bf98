"""ISO 8583 messages from acquirers to the gRPC contract and back: one field at a time, nothing guessed.

    0100 / 0200         -> AuthorizeRequest         0110 / 0210  <- AuthorizeResponse (39, 38, 54)
    0400 / 0420 / 0421  -> ReverseRequest           0410 / 0430  <- ReverseResponse (39)
    0120 / 0220 (+ 1)   -> AcquirerAdvice           0130 / 0230  <- AdviceAck (39)

Request ids. An ISO 8583 request has no id of its own: the acquirer names it by its institution
(32), its STAN (11) and its transmission date and time (7); a STAN alone repeats (daily at the
latest), 7 alone repeats yearly, and ids live 48 h. So

    request_id  = <field 32, zero-filled to 11 digits> ":" <field 11> ":" <field 7>
                  e.g. acquirer 1001, STAN 000123, 27 Nov 14:30:05 -> "00000001001:000123:1127143005"

and a reversal's field 90 (original STAN, original field 7) rebuilds the id of what it reverses,
with the reversal's own field 32 (a reversal reverses its own acquirer's request only; a
non-zero acquirer in 90 that is not 32 is a format error). A reversal's own id is derived the
same way from its own 32, 11 and 7, so a repeat (0421) with the same fields is the same reversal.
The original's MTI (0100 or 0200) is not part of the id.

What is not on the wire is not invented: pin_verified and cardholder_authenticated stay false (an
online PIN in 52 is the issuer's to verify; the chip's offline result is in 55, which stand-in
never reads), so stand-in classifies such a request in its unauthenticated risk tiers. The PIN
block, track data and chip data go into `sensitive` and reach the issuer unchanged, nowhere else.

Every failure is a `MappingError(field, rule)`: the listener answers 39 = 30 and logs the rule.
"""

from __future__ import annotations

from datetime import UTC, datetime

from authgw.iso8583 import (
    FormatError,
    MerchantLocation,
    Message,
    OriginalData,
    available_balance,
    build_reply,
    currency_alpha3,
    format_additional_amounts,
    parse_final_amount,
)
from authgw.v1 import authorization_pb2 as pb

__all__ = [
    "MappingError",
    "advice_reply",
    "authorization_reply",
    "iso_request_id",
    "reversal_reply",
    "to_acquirer_advice",
    "to_authorize_request",
    "to_reverse_request",
]

_ACQUIRER_DIGITS = 11
# Field 22, positions 1-2 (how the PAN was read) -> channel; 6011 (ATM) wins whatever was read.
_ENTRY_MODES: dict[str, int] = {
    "05": pb.POS_CHIP,  # chip
    "95": pb.POS_CHIP,  # chip, data may be unreliable
    "07": pb.POS_CONTACTLESS,  # contactless chip
    "91": pb.POS_CONTACTLESS,  # contactless magnetic-stripe data
    "02": pb.POS_MAGSTRIPE,  # magnetic stripe
    "90": pb.POS_MAGSTRIPE,  # full magnetic stripe read
    "80": pb.POS_MAGSTRIPE,  # chip fallback to magnetic stripe
    "01": pb.MOTO,  # keyed by the merchant (mail or telephone order)
    "81": pb.ECOMMERCE,  # e-commerce
    "10": pb.ECOMMERCE,  # credential on file
}
_ATM_MCC = "6011"
# Field 39 of an acquirer advice: "00" an approval the merchant forced (voice authorization, code
# in 38); "Y1" / "Y3" the terminal approved offline (EMV: within its floor limit / unable to go online).
_ADVICE_KINDS = {"00": pb.FORCED_POST, "Y1": pb.OFFLINE_APPROVED, "Y3": pb.OFFLINE_APPROVED}
_REVERSAL_ADVICES = frozenset({"0420", "0421"})


class MappingError(Exception):
    """A message the contract cannot carry as sent: the field (as "39", "90", ...) and the rule."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"field {field}: {rule}")


def iso_request_id(acquirer: str, stan: str, transmitted: str) -> str:
    """The request id of the message with fields 32, 11 and 7 (see the module docstring)."""
    return f"{acquirer:0>{_ACQUIRER_DIGITS}}:{stan}:{transmitted}"


def transmission_datetime(mmddhhmmss: str, now: datetime) -> datetime:
    """Field 7 (UTC, no year) as the moment nearest `now`: the year before, this year or the next."""
    month, day, hour, minute, second = (int(mmddhhmmss[i : i + 2]) for i in range(0, 10, 2))
    candidates = []
    for year in (now.year - 1, now.year, now.year + 1):
        try:
            candidates.append(datetime(year, month, day, hour, minute, second, tzinfo=UTC))
        except ValueError:  # 29 February of a common year, 31 April...
            continue
    if not candidates:
        raise MappingError("7", "is not a date of any year near now")
    return min(candidates, key=lambda at: abs(at - now))


def _channel(message: Message) -> int:
    if message.text(18) == _ATM_MCC:
        return pb.ATM
    mode = message.text(22)[:2]
    channel = _ENTRY_MODES.get(mode)
    if channel is None:
        known = ", ".join(sorted(_ENTRY_MODES))
        raise MappingError("22", f"PAN entry mode {mode} is not one we map ({known})")
    return channel


def _currency(message: Message) -> str:
    try:
        return currency_alpha3(message.text(49))
    except FormatError as exc:
        raise MappingError("49", exc.rule) from None


def _optional_text(message: Message, number: int) -> str:
    value = message.fields.get(number)
    return value if isinstance(value, str) else ""


def _sensitive(message: Message) -> pb.SensitiveData | None:
    """Fields 52, 35, 45, 55 as they came: for the issuer only."""
    if not any(n in message for n in (35, 45, 52, 55)):
        return None
    fields = message.fields
    pin_block, chip_data = fields.get(52, b""), fields.get(55, b"")
    assert isinstance(pin_block, bytes) and isinstance(chip_data, bytes)  # binary in our spec
    return pb.SensitiveData(
        pin_block=pin_block,
        track2=_optional_text(message, 35),
        track1=_optional_text(message, 45),
        chip_data=chip_data,
    )


def to_authorize_request(message: Message, now: datetime) -> pb.AuthorizeRequest:
    """A decoded 0100/0200 (or an advice's request) as the contract's AuthorizeRequest."""
    sent = transmission_datetime(message.text(7), now)
    location = MerchantLocation.parse(message.text(43)) if 43 in message else MerchantLocation("", "", "")
    request = pb.AuthorizeRequest(
        request_id=iso_request_id(message.text(32), message.text(11), message.text(7)),
        acquirer_id=message.text(32),
        pan=message.text(2),
        amount_minor=int(message.text(4)),
        currency=_currency(message),
        mcc=message.text(18),
        channel=_channel(message),  # type: ignore[arg-type]  # a Channel value
        merchant_id=message.text(42).rstrip(),
        terminal_id=message.text(41).rstrip(),
        merchant_country=location.country,
        processing_code=message.text(3),
        card_expiry=_optional_text(message, 14),
        stan=message.text(11),
        rrn=message.text(37),
        local_date=message.text(13),
        local_time=message.text(12),
        pos_entry_mode=message.text(22),
        merchant_name=location.name,
        merchant_city=location.city,
        sensitive=_sensitive(message),
    )
    request.transmitted_at.FromDatetime(sent)
    return request


def _reversal_reason(message: Message) -> int:
    # A reversal advice is sent by an acquirer that got no answer in time: a timeout reversal.
    return pb.TERMINAL_TIMEOUT if message.mti in _REVERSAL_ADVICES else pb.OTHER


def to_reverse_request(message: Message, now: datetime) -> pb.ReverseRequest:
    """A decoded 0400/0420/0421 as the contract's ReverseRequest (field 95: partial, final amount)."""
    acquirer = message.text(32)
    try:
        original = OriginalData.parse(message.text(90))
        final = parse_final_amount(message.text(95)) if 95 in message else 0
    except FormatError as exc:
        raise MappingError(exc.field or "90", exc.rule) from None
    if int(original.acquirer_id) and original.acquirer_id != f"{acquirer:0>{_ACQUIRER_DIGITS}}":
        raise MappingError("90", "original acquirer must be field 32's (or zeros)")
    amount = int(message.text(4))
    if 95 in message and not 0 < final < amount:
        raise MappingError("95", "a partial reversal's final amount must be above 0 and below field 4")
    request = pb.ReverseRequest(
        acquirer_id=acquirer,
        reversal_id=iso_request_id(acquirer, message.text(11), message.text(7)),
        original_request_id=iso_request_id(acquirer, original.stan, original.transmitted),
        pan=message.text(2),
        final_amount_minor=final,
        reason=_reversal_reason(message),  # type: ignore[arg-type]  # a ReversalReason value
        currency=_currency(message),
        original_amount_minor=amount,
    )
    request.transmitted_at.FromDatetime(transmission_datetime(message.text(7), now))
    return request


def to_acquirer_advice(message: Message, now: datetime) -> pb.AcquirerAdvice:
    """A decoded 0120/0121/0220/0221: an approval the acquirer gave without the issuer."""
    kind = _ADVICE_KINDS.get(message.text(39))
    if kind is None:
        raise MappingError("39", "an acquirer advice reports an approval: 00 (forced, 38 given), Y1 or Y3")
    return pb.AcquirerAdvice(
        request=to_authorize_request(message, now),
        kind=kind,
        approval_code=_optional_text(message, 38),
    )


def authorization_reply(request: Message, response: pb.AuthorizeResponse) -> Message:
    """The 0110/0210 of an answer: 39, 38 when approved, 54 (available balance) when the issuer sent it."""
    extra: dict[int, str | bytes] = {}
    if response.HasField("available_balance_minor"):
        currency = currency_alpha3(request.text(49))
        extra[54] = format_additional_amounts([available_balance(response.available_balance_minor, currency)])
    approved = response.decision == pb.APPROVED
    code = response.approval_code if approved else None
    return build_reply(request, response.response_code, approval_code=code, extra=extra)


def reversal_reply(request: Message, response: pb.ReverseResponse) -> Message:
    """The 0410/0430 of a recorded reversal: 39 as the gateway answered (00: taken)."""
    return build_reply(request, response.response_code or "00")


def advice_reply(request: Message, ack: pb.AdviceAck) -> Message:
    """The 0130/0230 of a recorded advice: 00 (a duplicate is acknowledged the same way)."""
    return build_reply(request, "00")
