"""The journal entry format: a stand-in decision or a reversal as Redis Stream fields (all text).

The same fields are stored in the local SQLite journal and moved to the stream
unchanged, so a consumer sees one format whichever journal recorded first.

A decision (`entry` absent or "decision"):

    v                       format version ("2"; "1" is still read: no acquirer, answered_at)
    entry                   "decision"
    decision_id             32 hex; idempotency key of the advice to the issuer
    acquirer_id             the acquiring institution (digits)
    request_id              the acquirer's request id
    card_token              HMAC token of the PAN (tokens.py)
    pan_enc                 AES-256-GCM of the PAN, base64(nonce|ciphertext|tag), AAD = decision_id
    pan_key_id              first 8 hex of SHA-256 of the PAN key that sealed pan_enc (crypto.py:
                            settlement opens it with that key, current or retired)
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
    answered_at             when this decision was given to the acquirer (ordering of advices)
    gateway_instance        the gateway that decided
    journal                 where first recorded: "redis" or "sqlite"
    trace_context           W3C traceparent of the authorization ("" if none)
    policy_version          the stand-in policy version that decided (0: the policy file;
                            absent in entries written before it: read as 0)
    again                   "1" when the decision was given again (a repeat answered from its
                            record after an attempt that may have reached an issuer): an entry
                            of a decision already journaled, with the later answered_at; sent to
                            the issuer even when that decision id is settled (absent: "")

A reversal (`entry` = "reversal"), forwarded to the issuer in the card's order:

    v, entry, decision_id   "2", "reversal", the entry's own id (rev-<32 hex>)
    acquirer_id, reversal_id, original_request_id, card_token, pan_enc, pan_key_id, pan_last4,
    final_amount_minor, original_amount_minor, currency, reason, transmitted_at, status
                            (applied | stored), decided_at, answered_at, gateway_instance,
                            journal, trace_context

Settlement reads entries with decode_entry / decode_reversal (PAN decrypted) or
decode_decision (no key needed); `entry_kind` tells them apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from authgw.codes import ResponseCode
from standin.crypto import PanKeyring
from standin.errors import EntryFormatError
from standin.types import (
    Channel,
    JournalKind,
    Reason,
    ReversalReason,
    ReversalStatus,
    StandInDecision,
    StandInRequest,
    StandInReversal,
)

__all__ = [
    "DECISION",
    "ENTRY_VERSION",
    "REVERSAL",
    "JournalEntry",
    "JournalReversal",
    "decode_decision",
    "decode_entry",
    "decode_reversal",
    "decrypt_pan",
    "encode_entry",
    "encode_reversal",
    "entry_kind",
    "with_decision",
]

ENTRY_VERSION = "2"
_READABLE_VERSIONS = frozenset({"1", "2"})
DECISION = "decision"
REVERSAL = "reversal"

_UNKNOWN_ACQUIRER = "0"  # format 1 had no acquirer

# What a caller may hand to the decoders: str or bytes keys and values (raw redis-py replies).
RawFields = Mapping[str, str] | Mapping[bytes, bytes]


def _flag(value: bool) -> str:
    return "1" if value else "0"


def encode_entry(
    request: StandInRequest,
    decision: StandInDecision,
    *,
    card_token: str,
    keyring: PanKeyring,
    trace_context: str,
) -> dict[str, str]:
    """The stream fields of `decision` taken on `request` (PAN sealed with the current key)."""
    pan_enc, key_id = keyring.seal(request.pan, decision.decision_id)
    return {
        "v": ENTRY_VERSION,
        "entry": DECISION,
        "decision_id": decision.decision_id,
        "acquirer_id": request.acquirer_id,
        "request_id": request.request_id,
        "card_token": card_token,
        "pan_enc": pan_enc,
        "pan_key_id": key_id,
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
        "answered_at": decision.answered.isoformat(timespec="milliseconds"),
        "gateway_instance": decision.gateway_instance,
        "journal": decision.journal.value,
        "trace_context": trace_context,
        "policy_version": str(decision.policy_version),
    }


def entry_kind(fields: RawFields) -> str:
    """DECISION or REVERSAL."""
    f = _text_fields(fields)
    return f.get("entry", DECISION)


def given_again(fields: RawFields) -> bool:
    """The entry of a decision given again (`again`): advised even if its decision id is settled."""
    return _text_fields(fields).get("again") == "1"


def with_decision(fields: dict[str, str], decision: StandInDecision, keyring: PanKeyring) -> dict[str, str]:
    """The entry of another decision of the same request: this entry's request, `decision`'s outcome.

    The PAN is sealed with the decision id as associated data, so it is re-sealed for the new id
    (with the current key). Raises UnknownPanKeyError when this entry's key is not configured.
    """
    pan_enc, key_id = keyring.seal(decrypt_pan(fields, keyring), decision.decision_id)
    out = dict(fields)
    out.update(
        pan_enc=pan_enc,
        pan_key_id=key_id,
        decision_id=decision.decision_id,
        approved=_flag(decision.approved),
        response_code=decision.response_code.value,
        approval_code=decision.approval_code,
        reason=decision.reason.value,
        rule=decision.rule,
        risk_tier=decision.risk_tier,
        decided_at=decision.decided_at.isoformat(timespec="milliseconds"),
        answered_at=decision.answered.isoformat(timespec="milliseconds"),
        gateway_instance=decision.gateway_instance,
        journal=decision.journal.value,
    )
    return out


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
    if _get(f, "v") not in _READABLE_VERSIONS:
        raise EntryFormatError(f"journal entry {f.get('decision_id', '?')}: unknown version {f['v']!r}")
    answered = f.get("answered_at")
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
            answered_at=datetime.fromisoformat(answered) if answered else None,
            policy_version=int(f.get("policy_version") or 0),
        )
    except ValueError as exc:
        raise EntryFormatError(f"journal entry {f.get('decision_id', '?')}: {exc}") from exc


def decrypt_pan(fields: RawFields, keyring: PanKeyring) -> str:
    """The clear PAN of an entry (for the advice to the issuer; never log it).

    Raises UnknownPanKeyError when the entry's key is neither the current nor a retired key.
    """
    f = _text_fields(fields)
    decision_id = _get(f, "decision_id")
    return keyring.open(_get(f, "pan_enc"), decision_id, _get(f, "pan_key_id"))


def decode_entry(fields: RawFields, keyring: PanKeyring) -> JournalEntry:
    """The full entry: request with its clear PAN, and decision."""
    f = _text_fields(fields)
    decision = decode_decision(f)
    try:
        request = StandInRequest(
            request_id=_get(f, "request_id"),
            acquirer_id=f.get("acquirer_id", _UNKNOWN_ACQUIRER),
            pan=decrypt_pan(f, keyring),
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


def encode_reversal(
    reversal: StandInReversal,
    *,
    entry_id: str,
    card_token: str,
    keyring: PanKeyring,
    status: ReversalStatus,
    decided_at: datetime,
    gateway_instance: str,
    journal: JournalKind,
    trace_context: str,
) -> dict[str, str]:
    """The stream fields of a reversal to forward to the issuer (PAN sealed with the current key)."""
    at = decided_at.isoformat(timespec="milliseconds")
    pan_enc, key_id = keyring.seal(reversal.pan, entry_id)
    return {
        "v": ENTRY_VERSION,
        "entry": REVERSAL,
        "decision_id": entry_id,
        "acquirer_id": reversal.acquirer_id,
        "reversal_id": reversal.reversal_id,
        "original_request_id": reversal.original_request_id,
        "card_token": card_token,
        "pan_enc": pan_enc,
        "pan_key_id": key_id,
        "pan_last4": reversal.pan_last4,
        "final_amount_minor": str(reversal.final_amount_minor),
        "original_amount_minor": str(reversal.original_amount_minor),
        "currency": reversal.currency,
        "reason": reversal.reason.value,
        "transmitted_at": reversal.transmitted_at.isoformat(),
        "status": status.value,
        "decided_at": at,
        "answered_at": at,
        "gateway_instance": gateway_instance,
        "journal": journal.value,
        "trace_context": trace_context,
    }


@dataclass(frozen=True, slots=True)
class JournalReversal:
    """A decoded reversal entry (PAN decrypted; repr hides it)."""

    reversal: StandInReversal
    entry_id: str
    card_token: str
    status: ReversalStatus
    decided_at: datetime
    gateway_instance: str
    trace_context: str


def decode_reversal(fields: RawFields, keyring: PanKeyring) -> JournalReversal:
    """A reversal entry, its PAN decrypted."""
    f = _text_fields(fields)
    entry_id = _get(f, "decision_id")
    try:
        reversal = StandInReversal(
            acquirer_id=_get(f, "acquirer_id"),
            reversal_id=_get(f, "reversal_id"),
            original_request_id=_get(f, "original_request_id"),
            pan=decrypt_pan(f, keyring),
            final_amount_minor=int(_get(f, "final_amount_minor")),
            currency=_get(f, "currency"),
            reason=ReversalReason(_get(f, "reason")),
            transmitted_at=datetime.fromisoformat(_get(f, "transmitted_at")),
            original_amount_minor=int(f.get("original_amount_minor", "0")),
        )
        return JournalReversal(
            reversal,
            entry_id,
            _get(f, "card_token"),
            ReversalStatus(_get(f, "status")),
            datetime.fromisoformat(_get(f, "decided_at")),
            _get(f, "gateway_instance"),
            f.get("trace_context", ""),
        )
    except ValueError as exc:  # InvalidRequestError included
        raise EntryFormatError(f"journal entry {entry_id}: {exc}") from exc
