"""The gRPC contract to ISO 8583 issuer hosts and back: both ends of an issuer link, one module.

    gateway -> host                                       host -> gateway
    AuthorizeRequest  -> 0100 / 0200                      0110 / 0210 -> AuthorizeResponse
    StandInAdvice     -> 0120 / 0220 (0121 / 0221 again)  0130 / 0230 -> AdviceAck
    ReverseRequest    -> 0420 (0421 again)                0430        -> ReverseResponse

The `host_*` functions are the other end (what an issuer host makes of those messages and how
it answers): the issuer simulator uses them, so both ends are one mapping and cannot drift.

On the link, 11 (STAN) and 7 (transmission time) are the gateway's own (a STAN names a
message on its link; a retry on another host is a new message there); 37 (RRN) is the
acquirer's, or derived from its request id when it gave none, so it names the transaction
end to end. 32 is the acquirer's. What the contract has beyond ISO 8583 (request id, decision
id, the times an issuer's book orders by) is in field 48 (gateway/edges/iso8583_private.py).
Track data, PIN block and chip data go to the host unchanged (35, 45, 52, 55) in an
authorization, never in an advice or a reversal.
"""

from __future__ import annotations

from datetime import UTC, datetime

from authgw.iso8583 import (
    FormatError,
    MerchantLocation,
    Message,
    OriginalData,
    build_reply,
    currency_alpha3,
    currency_numeric,
    find_available_balance,
    format_amount,
    parse_additional_amounts,
    parse_final_amount,
    replacement_amounts,
    transmission_time,
)
from authgw.v1 import authorization_pb2 as pb
from gateway.edges.iso8583_mapping import (
    MappingError,
    authorization_reply,
    iso_request_id,
    to_authorize_request,
)
from gateway.edges.iso8583_private import (
    PRIVATE_FIELD,
    derived_rrn,
    format_private,
    micros,
    parse_private,
    timestamp_of,
)

__all__ = [
    "advice_answer",
    "advice_message",
    "authorization_answer",
    "authorization_message",
    "host_advice",
    "host_advice_reply",
    "host_authorization_reply",
    "host_authorize_request",
    "host_reversal_reply",
    "host_reverse_request",
    "reversal_answer",
    "reversal_message",
]

# Channel -> field 22 when the acquirer sent no entry mode (the inverse of the acquirer edge's table).
_ENTRY_MODE = {
    pb.POS_CHIP: "051", pb.POS_CONTACTLESS: "071", pb.POS_MAGSTRIPE: "021",
    pb.ECOMMERCE: "810", pb.MOTO: "010", pb.ATM: "051",
}  # fmt: skip
_SENSITIVE = ((52, "pin_block"), (35, "track2"), (45, "track1"), (55, "chip_data"))
_BLANK_TERMINAL, _BLANK_MERCHANT = " " * 8, " " * 15


def _padded(value: str, size: int, field: int, name: str) -> str:
    if len(value) > size:
        raise MappingError(str(field), f"{name} is {len(value)} characters; ISO 8583 carries {size}")
    return f"{value:<{size}}"


def _common(req: pb.AuthorizeRequest, stan: str, now: datetime) -> dict[int, str | bytes]:
    """The fields an authorization and its advice share."""
    sent = req.transmitted_at.ToDatetime(tzinfo=UTC) if req.HasField("transmitted_at") else now
    try:
        fields: dict[int, str | bytes] = {
            2: req.pan, 3: req.processing_code or "000000", 4: format_amount(req.amount_minor),
            7: transmission_time(now), 11: stan, 12: req.local_time or sent.strftime("%H%M%S"),
            13: req.local_date or sent.strftime("%m%d"), 18: req.mcc,
            22: req.pos_entry_mode or _ENTRY_MODE.get(req.channel, "051"), 32: req.acquirer_id,
            37: req.rrn or derived_rrn(req.acquirer_id, req.request_id),
            41: _padded(req.terminal_id, 8, 41, "terminal_id"),
            42: _padded(req.merchant_id, 15, 42, "merchant_id"), 49: currency_numeric(req.currency),
        }  # fmt: skip
        if req.merchant_country:
            location = MerchantLocation(req.merchant_name, req.merchant_city, req.merchant_country)
            fields[43] = location.encode()
    except FormatError as exc:
        raise MappingError(exc.field or "?", exc.rule) from None
    if req.card_expiry:
        fields[14] = req.card_expiry
    return fields


def authorization_message(req: pb.AuthorizeRequest, *, mti: str, stan: str, now: datetime) -> Message:
    """An 0100 (or 0200) to an issuer host: every standard field, sensitive data unchanged, 48."""
    fields = _common(req, stan, now)
    if req.HasField("sensitive"):
        for number, name in _SENSITIVE:
            value = getattr(req.sensitive, name)
            if value:
                fields[number] = value
    private = {"RI": req.request_id, "FA": micros(req.forwarded_at), "CH": str(int(req.channel))}
    fields[PRIVATE_FIELD] = format_private(private)
    return _checked(Message(mti, fields))


def advice_message(advice: pb.StandInAdvice, *, mti: str, stan: str, now: datetime) -> Message:
    """An 0120 / 0220 (0121 / 0221 for a repeat): the original's fields, the decision in 39 and 38."""
    req = advice.request
    fields = _common(req, stan, now)
    fields[39] = advice.response_code
    if advice.decision == pb.APPROVED and advice.approval_code:
        fields[38] = advice.approval_code
    private = {
        "RI": req.request_id, "DI": advice.decision_id, "AA": micros(advice.answered_at),
        "OG": str(int(advice.origin)), "CH": str(int(req.channel)),
    }  # fmt: skip
    fields[PRIVATE_FIELD] = format_private(private)
    return _checked(Message(mti, fields))


def reversal_message(rev: pb.ReverseRequest, *, mti: str, stan: str, now: datetime) -> Message:
    """An 0420 (0421 for a repeat): 4 the original amount, 95 the final one when partial, 90 and 48.

    The original's STAN and time on this link are not known here (it may have gone to another
    host, or been decided in stand-in): 90 carries zeros for them, 48 the original's request id.
    """
    try:
        fields: dict[int, str | bytes] = {
            2: rev.pan, 3: "000000", 4: format_amount(rev.original_amount_minor), 7: transmission_time(now),
            11: stan, 32: rev.acquirer_id, 37: derived_rrn(rev.acquirer_id, rev.original_request_id),
            41: _BLANK_TERMINAL, 42: _BLANK_MERCHANT, 49: currency_numeric(rev.currency),
            90: OriginalData("0100", "000000", "0000000000", rev.acquirer_id).encode(),
        }  # fmt: skip
        if rev.final_amount_minor:
            fields[95] = replacement_amounts(rev.final_amount_minor)
    except FormatError as exc:
        raise MappingError(exc.field or "?", exc.rule) from None
    fields[PRIVATE_FIELD] = format_private({"VI": rev.reversal_id, "OI": rev.original_request_id})
    return _checked(Message(mti, fields))


def _checked(message: Message) -> Message:
    try:
        message.check()
    except FormatError as exc:
        raise MappingError(exc.field or "?", exc.rule) from None
    return message


def _private(message: Message) -> dict[str, str]:
    text = message.fields.get(PRIVATE_FIELD)
    return parse_private(text) if isinstance(text, str) else {}


def authorization_answer(reply: Message, req: pb.AuthorizeRequest) -> pb.AuthorizeResponse:
    """An 0110 / 0210 as the contract's answer (39, 38, 54's available balance, 48's decision id)."""
    code = reply.text(39)
    response = pb.AuthorizeResponse(
        request_id=req.request_id,
        decision=pb.APPROVED if code == "00" else pb.DECLINED,
        response_code=code,
        approval_code=reply.text(38) if code == "00" else "",
        source=pb.ISSUER,
        decision_id=_private(reply).get("DI", ""),
    )
    balances = reply.fields.get(54)
    if isinstance(balances, str):
        try:
            balance = find_available_balance(parse_additional_amounts(balances))
        except FormatError as exc:
            raise MappingError("54", exc.rule) from None
        if balance is not None:
            response.available_balance_minor = balance.amount_minor
    return response


def advice_answer(reply: Message, advice: pb.StandInAdvice) -> pb.AdviceAck:
    """An 0130 / 0230 with 39 = 00 as the acknowledgement of `advice`."""
    return pb.AdviceAck(decision_id=advice.decision_id, duplicate=_private(reply).get("DU") == "1")


def reversal_answer(reply: Message, rev: pb.ReverseRequest) -> pb.ReverseResponse:
    """An 0430 with 39 = 00 as the contract's reversal answer (48's status, else APPLIED)."""
    status = _private(reply).get("ST", "")
    return pb.ReverseResponse(
        reversal_id=rev.reversal_id,
        status=int(status) if status.isdigit() else pb.APPLIED,  # type: ignore[arg-type]  # a ReversalStatus
        response_code=reply.text(39),
        source=pb.ISSUER,
    )


def host_authorize_request(message: Message, now: datetime) -> pb.AuthorizeRequest:
    """What an issuer host makes of an 0100 / 0200: the acquirer edge's mapping, then 48's contract data."""
    request = to_authorize_request(message, now)
    private = _private(message)
    request.request_id = private.get("RI") or request.request_id
    forwarded = timestamp_of(private.get("FA", ""), "FA")
    if forwarded is not None:
        request.forwarded_at.CopyFrom(forwarded)
    channel = private.get("CH", "")
    if channel.isdigit() and int(channel) in pb.Channel.values():
        request.channel = int(channel)  # type: ignore[assignment]  # a Channel value
    return request


def host_authorization_reply(request: Message, response: pb.AuthorizeResponse) -> Message:
    """The host's 0110 / 0210: the acquirer edge's reply, with the decision id in 48."""
    reply = authorization_reply(request, response)
    return reply.with_fields({PRIVATE_FIELD: format_private({"DI": response.decision_id}) or None})


def host_advice(message: Message, now: datetime) -> pb.StandInAdvice:
    """What an issuer host makes of an 0120 / 0121 / 0220 / 0221 from the gateway."""
    private = _private(message)
    code = message.text(39)
    advice = pb.StandInAdvice(
        decision_id=private.get("DI", ""),
        request=host_authorize_request(message, now),
        decision=pb.APPROVED if code == "00" else pb.DECLINED,
        response_code=code,
        approval_code=message.text(38) if 38 in message else "",
        origin=int(private.get("OG", "0") or 0),  # type: ignore[arg-type]  # an AdviceOrigin value
    )
    answered = timestamp_of(private.get("AA", ""), "AA")
    if answered is not None:
        advice.answered_at.CopyFrom(answered)
    return advice


def host_advice_reply(request: Message, ack: pb.AdviceAck) -> Message:
    """The host's 0130 / 0230: 00, and DU when it had the advice already."""
    reply = build_reply(request, "00")
    return reply.with_fields({PRIVATE_FIELD: format_private({"DU": "1" if ack.duplicate else ""}) or None})


def host_reverse_request(message: Message, now: datetime) -> pb.ReverseRequest:
    """What an issuer host makes of an 0400 / 0420 / 0421: 48's ids, else those of 32 + 11 + 7 and 90."""
    private = _private(message)
    acquirer = message.text(32)
    try:
        original = OriginalData.parse(message.text(90))
        final = parse_final_amount(message.text(95)) if 95 in message else 0
        currency = currency_alpha3(message.text(49))
    except FormatError as exc:
        raise MappingError(exc.field or "90", exc.rule) from None
    reversal = pb.ReverseRequest(
        acquirer_id=acquirer,
        reversal_id=private.get("VI") or iso_request_id(acquirer, message.text(11), message.text(7)),
        original_request_id=private.get("OI")
        or iso_request_id(acquirer, original.stan, original.transmitted),
        pan=message.text(2),
        final_amount_minor=final,
        reason=pb.TERMINAL_TIMEOUT if message.mti in ("0420", "0421") else pb.OTHER,
        currency=currency,
        original_amount_minor=int(message.text(4)),
    )
    reversal.transmitted_at.FromDatetime(now)
    return reversal


def host_reversal_reply(request: Message, response: pb.ReverseResponse) -> Message:
    """The host's 0410 / 0430: its code, and the reversal's status in 48."""
    reply = build_reply(request, response.response_code or "00")
    return reply.with_fields({PRIVATE_FIELD: format_private({"ST": str(int(response.status))}) or None})
