"""Stand-in domain types: the request it decides on and the decision it returns.

These are independent of gRPC: the gateway converts its protobuf messages to
and from them at its edge.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

from authgw.card_expiry import expiry_problem
from authgw.codes import ResponseCode
from standin.errors import InvalidRequestError

__all__ = [
    "AcquirerAdviceKind",
    "CardStatus",
    "Channel",
    "Check",
    "CheckResult",
    "JournalKind",
    "LimitKind",
    "Reason",
    "ReversalOutcome",
    "ReversalReason",
    "ReversalStatus",
    "StandInDecision",
    "StandInRequest",
    "StandInReversal",
    "luhn_valid",
    "mask_pan",
]

_PAN = re.compile(r"[0-9]{12,19}")
_ACQUIRER = re.compile(r"[0-9]{1,11}")
_MCC = re.compile(r"[0-9]{4}")
_ALPHA3 = re.compile(r"[A-Z]{3}")
_ALPHA2 = re.compile(r"[A-Z]{2}")


class Channel(enum.StrEnum):
    """Where and how the card was presented."""

    POS_CHIP = "POS_CHIP"
    POS_CONTACTLESS = "POS_CONTACTLESS"
    POS_MAGSTRIPE = "POS_MAGSTRIPE"
    ECOMMERCE = "ECOMMERCE"
    MOTO = "MOTO"
    ATM = "ATM"


class Check(enum.StrEnum):
    """A verification the acquirer or its front end made before sending the request."""

    CVV = "cvv"  # card verification value (CVV2 / CVC2, card not present)
    CRYPTOGRAM = "cryptogram"  # EMV chip cryptogram (ARQC)
    PIN = "pin"


class CheckResult(enum.StrEnum):
    """What a check found; ABSENT when the request does not say (most terminal traffic)."""

    ABSENT = "absent"
    VERIFIED = "verified"
    FAILED = "failed"


class Reason(enum.StrEnum):
    """Why the gateway asked stand-in to decide."""

    ALL_POOLS_FAILED = "ALL_POOLS_FAILED"
    NO_LIVE_MEMBERS = "NO_LIVE_MEMBERS"
    DECLINE_STORM = "DECLINE_STORM"
    FORCED = "FORCED"
    CLIENT_DEADLINE = "CLIENT_DEADLINE"  # not a stand-in decision: the gateway's 91, recorded as such
    ACQUIRER_ADVICE = "ACQUIRER_ADVICE"  # not a stand-in decision: an approval the acquirer gave (advice)


class AcquirerAdviceKind(enum.StrEnum):
    """How an acquirer approved without the issuer (names as in the proto's AcquirerAdviceKind)."""

    FORCED_POST = "FORCED_POST"  # the merchant overrode the terminal and validated by hand
    OFFLINE_APPROVED = "OFFLINE_APPROVED"  # the terminal approved offline, within its floor limit

    @property
    def rule(self) -> str:
        """The rule an advice of this kind is recorded under (journal, request record)."""
        return _ADVICE_RULES[self]

    @classmethod
    def of_rule(cls, rule: str) -> AcquirerAdviceKind | None:
        """The kind a recorded rule stands for; None for a stand-in decision's rule."""
        for kind, name in _ADVICE_RULES.items():
            if name == rule:
                return kind
        return None


_ADVICE_RULES = {
    AcquirerAdviceKind.FORCED_POST: "acquirer.forced_post",
    AcquirerAdviceKind.OFFLINE_APPROVED: "acquirer.offline",
}


class ReversalReason(enum.StrEnum):
    """Why an acquirer reverses a transaction (names as in the proto)."""

    CARDHOLDER_CANCEL = "CARDHOLDER_CANCEL"
    TERMINAL_TIMEOUT = "TERMINAL_TIMEOUT"
    PARTIAL_DISPENSE = "PARTIAL_DISPENSE"
    SUSPECTED_FRAUD = "SUSPECTED_FRAUD"
    OTHER = "OTHER"
    PREAUTH_COMPLETION = "PREAUTH_COMPLETION"


class ReversalStatus(enum.StrEnum):
    """What stand-in did with a reversal."""

    APPLIED = "applied"  # a stand-in approval reduced to the final amount: forwarded after it
    STORED = "stored"  # recorded; forwarded to the issuer in the card's order
    NO_EFFECT = "no_effect"  # the original is already at this amount or lower
    # The original was declined: no effect here (the acquirer hears NO_EFFECT), but forwarded after it
    # all the same: the request may still end approved where this gateway cannot see it (another
    # gateway's local decision of a repeat, told later, replaces the decline when it is merged), and
    # the issuer caps whatever the request ends at by every reversal of it.
    DECLINED = "declined"
    FORWARD = "forward"  # nothing of the card waits: the caller sends it to the issuer now


class CardStatus(enum.StrEnum):
    """Card status pushed by the issuer; ACTIVE removes a previous status."""

    ACTIVE = "active"
    BLOCKED = "blocked"
    LOST = "lost"
    STOLEN = "stolen"


class LimitKind(enum.StrEnum):
    """Which cumulative counter a transaction draws on."""

    PURCHASE = "purchase"
    CASH = "cash"


class JournalKind(enum.StrEnum):
    """Where a decision was first durably recorded."""

    REDIS = "redis"
    SQLITE = "sqlite"
    NONE = "none"  # not recorded: only ever on a 91 decline


def luhn_valid(pan: str) -> bool:
    """True when the digit string passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def mask_pan(pan: str) -> str:
    """The only form of a PAN allowed in logs: its last four digits."""
    return f"…{pan[-4:]}"


@dataclass(frozen=True, slots=True)
class StandInRequest:
    """One authorization request, as stand-in sees it.

    Its identity is (acquirer_id, request_id) and its content: a repeat with other content is
    another transaction under a reused id, refused (the engine keeps a keyed digest of it).
    """

    request_id: str
    acquirer_id: str
    pan: str = field(repr=False)  # never printed: repr would leak it into logs and tracebacks
    amount_minor: int
    currency: str
    mcc: str
    channel: Channel
    merchant_id: str
    terminal_id: str
    merchant_country: str
    pin_verified: bool
    cardholder_authenticated: bool
    transmitted_at: datetime
    card_expiry: str = ""  # YYMM (ISO 8583 field 14); "" when the acquirer did not send it
    cvv: CheckResult = CheckResult.ABSENT
    cryptogram: CheckResult = CheckResult.ABSENT
    pin: CheckResult = CheckResult.ABSENT

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0 < len(self.request_id) <= 64:
            problems.append("request_id must be 1-64 characters")
        if not _ACQUIRER.fullmatch(self.acquirer_id):
            problems.append("acquirer_id must be 1-11 digits")
        if not _PAN.fullmatch(self.pan):
            problems.append("pan must be 12-19 digits")
        if isinstance(self.amount_minor, bool) or self.amount_minor <= 0:
            problems.append("amount_minor must be a positive integer")
        if not _ALPHA3.fullmatch(self.currency):
            problems.append("currency must be ISO 4217 alpha-3 (e.g. EUR)")
        if not _MCC.fullmatch(self.mcc):
            problems.append("mcc must be 4 digits")
        if not _ALPHA2.fullmatch(self.merchant_country):
            problems.append("merchant_country must be ISO 3166 alpha-2 (e.g. FR)")
        if self.transmitted_at.tzinfo is None:
            problems.append("transmitted_at must be timezone-aware")
        if self.card_expiry and expiry_problem(self.card_expiry) is not None:
            problems.append("card_expiry must be YYMM")
        if problems:
            raise InvalidRequestError(f"request {self.request_id!r}: " + "; ".join(problems))

    @property
    def pan_last4(self) -> str:
        return self.pan[-4:]

    def check(self, check: Check) -> CheckResult:
        """The result the request carries for `check`."""
        return {Check.CVV: self.cvv, Check.CRYPTOGRAM: self.cryptogram, Check.PIN: self.pin}[check]

    def content(self) -> str:
        """What makes a repeat the same transaction (not transmitted_at, which a retransmission changes)."""
        return "\x1f".join(
            (self.pan, str(self.amount_minor), self.currency, self.mcc, self.merchant_id, self.terminal_id,
             self.channel.value)
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StandInReversal:
    """One reversal (full: final amount 0; partial: the amount the transaction stands at)."""

    acquirer_id: str
    reversal_id: str
    original_request_id: str
    pan: str = field(repr=False)
    final_amount_minor: int
    currency: str
    reason: ReversalReason
    transmitted_at: datetime
    original_amount_minor: int = 0  # what the acquirer believes was authorized (0: unknown)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not _ACQUIRER.fullmatch(self.acquirer_id):
            problems.append("acquirer_id must be 1-11 digits")
        for name in ("reversal_id", "original_request_id"):
            if not 0 < len(getattr(self, name)) <= 64:
                problems.append(f"{name} must be 1-64 characters")
        if not _PAN.fullmatch(self.pan):
            problems.append("pan must be 12-19 digits")
        if isinstance(self.final_amount_minor, bool) or self.final_amount_minor < 0:
            problems.append("final_amount_minor must be >= 0")
        if not _ALPHA3.fullmatch(self.currency):
            problems.append("currency must be ISO 4217 alpha-3 (e.g. EUR)")
        if problems:
            raise InvalidRequestError(f"reversal {self.reversal_id!r}: " + "; ".join(problems))

    @property
    def pan_last4(self) -> str:
        return self.pan[-4:]


@dataclass(frozen=True, slots=True)
class ReversalOutcome:
    """What stand-in recorded of a reversal."""

    status: ReversalStatus
    entry_id: str  # id of its journal entry ('' when none: NO_EFFECT, FORWARD)
    journal: JournalKind


@dataclass(frozen=True, slots=True)
class StandInDecision:
    """What stand-in answered, and why."""

    decision_id: str
    request_id: str
    approved: bool
    response_code: ResponseCode
    approval_code: str  # 6 characters when approved, empty otherwise
    rule: str  # the rule that decided, e.g. "card_status.lost", "limit.amount.purchase", "approved"
    risk_tier: str
    reason: Reason
    decided_at: datetime
    gateway_instance: str
    journal: JournalKind  # where it is durably recorded
    answered_at: datetime | None = field(default=None, compare=False)  # when last given to the acquirer
    repeated: bool = field(default=False, compare=False)  # the request's recorded decision, given again
    policy_version: int = 0
    """The stand-in policy version that decided (0: the policy file; policy_live.py); a repeat
    gets it from the request's Redis record. A record made locally (SQLite, then moved) holds
    none: its repeat carries the version in use; its journal entry keeps the deciding one."""

    @property
    def answered(self) -> datetime:
        return self.answered_at or self.decided_at
