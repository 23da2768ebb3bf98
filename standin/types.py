"""Stand-in domain types: the request it decides on and the decision it returns.

These are independent of gRPC: the gateway converts its protobuf messages to
and from them at its edge.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

from authgw.codes import ResponseCode
from standin.errors import InvalidRequestError

__all__ = [
    "CardStatus",
    "Channel",
    "JournalKind",
    "LimitKind",
    "Reason",
    "StandInDecision",
    "StandInRequest",
    "luhn_valid",
    "mask_pan",
]

_PAN = re.compile(r"[0-9]{12,19}")
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


class Reason(enum.StrEnum):
    """Why the gateway asked stand-in to decide."""

    ALL_POOLS_FAILED = "ALL_POOLS_FAILED"
    NO_LIVE_MEMBERS = "NO_LIVE_MEMBERS"
    DECLINE_STORM = "DECLINE_STORM"
    FORCED = "FORCED"


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
    """One authorization request, as stand-in sees it."""

    request_id: str
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

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0 < len(self.request_id) <= 64:
            problems.append("request_id must be 1-64 characters")
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
        if problems:
            raise InvalidRequestError(f"request {self.request_id!r}: " + "; ".join(problems))

    @property
    def pan_last4(self) -> str:
        return self.pan[-4:]


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
