"""The journal entry format: one stand-in decision as Redis Stream fields (all text).

The same fields are stored in the local SQLite journal and moved to the stream
unchanged, so a consumer sees one format whichever journal recorded first.

    v                       format version ("1")
    decision_id             32 hex; idempotency key of the advice to the issuer
    request_id              the acquirer's request id
    card_token              HMAC token of the PAN (tokens.py)
    pan_enc                 AES-256-GCM of the PAN, base64(nonce|ciphertext|tag), AAD = decision_id
    pan_key_id              first 8 hex of SHA-256 of the PAN key (for key rotation)
    pan_last4               last four digits (the most of a PAN allowed in clear)
    amount_minor, currency, mcc, channel, merchant_id, terminal_id, merchant_country,
    pin_verified, cardholder_authenticated ("1"/"0"), transmitted_at (ISO 8601)
                            the original request
    approved                "1" / "0"
    response_code           ISO 8583 field 39
    approval_code           6 characters when approved, "" otherwise
    reason                  why stand-in decided (ALL_POOLS_FAILED, ...)
    rule                    the rule that decided (rules.py, lua.py)
    risk_tier               tier name from the policy
    decided_at              ISO 8601 UTC, milliseconds
    gateway_instance        the gateway that decided
    journal                 where first recorded: "redis" or "sqlite"
    trace_context           W3C traceparent of the authorization ("" if none)

Settlement reads entries with decode_entry (PAN decrypted) or decode_decision
(no key needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from authgw.codes import ResponseCode
from standin.crypto import PanCipher
from standin.errors import EntryFormatError
from standin.types import Channel, JournalKind, Reason, StandInDecision, StandInRequest

__all__ = [
    "ENTRY_VERSION",
    "JournalEntry",
    "decode_decision",
    "decode_entry",
    "decrypt_pan",
    "encode_entry",
]

ENTRY_VERSION = "1"

# What a caller may hand to the decoders: str or bytes keys and values (raw redis-py replies).
RawFields = Mapping[str, str] | Mapping[bytes, bytes]


def _flag(value: bool) -> str:
    return "1" if value else "0"


def encode_entry(
    request: StandInRequest,
    decision: StandInDecision,
    *,
    card_token: str,
    cipher: PanCipher,
    trace_context: str,
) -> dict[str, str]:
    """The stream fields of `decision` taken on `request`."""
    return {
        "v": ENTRY_VERSION,
        "decision_id": decision.decision_id,
        "request_id": request.request_id,
        "card_token": card_token,
        "pan_enc": cipher.encrypt(request.pan, decision.decision_id),
        "pan_key_id": cipher.key_id,
        "pan_last4": request.pan_last4,
        "amount_minor": str(request.amount_minor),
        "currency": request.currency,
        "mcc": request.mcc,
        "channel": request.channel.value,
        "merchant_id": request.merchant_id,
        "terminal_id": request.terminal_id,
        "merchant_country": request.merchant_country,
        "pin_verified": _flag(request.pin_verified),
        "cardholder_authenticated": _flag(request.cardholder_authenticated),
        "transmitted_at": request.transmitted_at.isoformat(),
        "approved": _flag(decision.approved),
        "response_code": decision.response_code.value,
        "approval_code": decision.approval_code,
        "reason": decision.reason.value,
        "rule": decision.rule,
        "risk_tier": decision.risk_tier,
        "decided_at": decision.decided_at.isoformat(timespec="milliseconds"),
        "gateway_instance": decision.gateway_instance,
        "journal": decision.journal.value,
        "trace_context": trace_context,
    }


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A decoded journal entry: the original request (PAN decrypted; repr hides it) and its decision."""

    request: StandInRequest
    decision: StandInDecision
    card_token: str
    trace_context: str


def _text_fields(fields: RawFields) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in fields.items():
        out[k.decode() if isinstance(k, bytes) else k] = v.decode() if isinstance(v, bytes) else v
    return out


def _get(f: Mapping[str, str], name: str) -> str:
    try:
        return f[name]
    except KeyError:
        raise EntryFormatError(f"journal entry {f.get('decision_id', '?')}: missing field {name!r}") from None


def decode_decision(fields: RawFields) -> StandInDecision:
    """The decision of an entry (no key needed)."""
    f = _text_fields(fields)
    if _get(f, "v") != ENTRY_VERSION:
        raise EntryFormatError(f"journal entry {f.get('decision_id', '?')}: unknown version {f['v']!r}")
    try:
        return StandInDecision(
            decision_id=_get(f, "decision_id"),
            request_id=_get(f, "request_id"),
            approved=_get(f, "approved") == "1",
            response_code=ResponseCode(_get(f, "response_code")),
            approval_code=_get(f, "approval_code"),
            rule=_get(f, "rule"),
            risk_tier=_get(f, "risk_tier"),
            reason=Reason(_get(f, "reason")),
            decided_at=datetime.fromisoformat(_get(f, "decided_at")),
            gateway_instance=_get(f, "gateway_instance"),
            journal=JournalKind(_get(f, "journal")),
        )
    except ValueError as exc:
        raise EntryFormatError(f"journal entry {f.get('decision_id', '?')}: {exc}") from exc


def decrypt_pan(fields: RawFields, cipher: PanCipher) -> str:
    """The clear PAN of an entry (for the advice to the issuer; never log it)."""
    f = _text_fields(fields)
    decision_id = _get(f, "decision_id")
    if _get(f, "pan_key_id") != cipher.key_id:
        raise EntryFormatError(
            f"journal entry {decision_id}: PAN sealed with key {f['pan_key_id']}, not {cipher.key_id}"
        )
    return cipher.decrypt(_get(f, "pan_enc"), decision_id)


def decode_entry(fields: RawFields, cipher: PanCipher) -> JournalEntry:
    """The full entry: request with its clear PAN, and decision."""
    f = _text_fields(fields)
    decision = decode_decision(f)
    try:
        request = StandInRequest(
            request_id=_get(f, "request_id"),
            pan=decrypt_pan(f, cipher),
            amount_minor=int(_get(f, "amount_minor")),
            currency=_get(f, "currency"),
            mcc=_get(f, "mcc"),
            channel=Channel(_get(f, "channel")),
            merchant_id=_get(f, "merchant_id"),
            terminal_id=_get(f, "terminal_id"),
            merchant_country=_get(f, "merchant_country"),
            pin_verified=_get(f, "pin_verified") == "1",
            cardholder_authenticated=_get(f, "cardholder_authenticated") == "1",
            transmitted_at=datetime.fromisoformat(_get(f, "transmitted_at")),
        )
    except ValueError as exc:  # InvalidRequestError included
        raise EntryFormatError(f"journal entry {decision.decision_id}: {exc}") from exc
    return JournalEntry(request, decision, _get(f, "card_token"), f.get("trace_context", ""))
