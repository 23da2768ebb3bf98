"""Simulated cards: an opening balance and status for every PAN, with no set-up.

Cards are deterministic from the PAN (`card_profile`), so every simulator host
of an issuer, and every test, agrees on a card's opening state. A few
well-known PANs have a fixed fate for tests. `decide` is the issuer's rule
from a card's state to an ISO 8583 response code: `MemoryLedger` calls it,
`RedisLedger`'s authorize script mirrors it.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "LARGE_BALANCE_MINOR",
    "LOW_BALANCE_MINOR",
    "PAN_BLOCKED",
    "PAN_LOST",
    "PAN_LOW_BALANCE",
    "PAN_STOLEN",
    "WELL_KNOWN_TEST_PANS",
    "CardProfile",
    "CardStatus",
    "card_profile",
    "card_token",
    "decide",
    "luhn_valid",
]


class CardStatus(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"  # declined 05 (do not honour)
    LOST = "lost"  # declined 41
    STOLEN = "stolen"  # declined 43


class CardProfile(NamedTuple):
    """Opening state of a card."""

    balance_minor: int
    status: CardStatus


LARGE_BALANCE_MINOR = 10**14  # never exhausted by a benchmark, still exact in Lua's doubles
LOW_BALANCE_MINOR = 10_000  # 100.00

# Public test card numbers: always active with a balance no benchmark exhausts.
WELL_KNOWN_TEST_PANS: frozenset[str] = frozenset({
    "4111111111111111", "4012888888881881", "4242424242424242", "4000056655665556",
    "5555555555554444", "5105105105105100", "2223003122003222", "5200828282828210",
    "378282246310005", "371449635398431", "6011111111111117", "3566002020360505",
    "36227206271667",
})  # fmt: skip

# Luhn-valid PANs with a fixed fate, for tests (numbers borrowed from common test-card lists).
PAN_BLOCKED = "4000000000000002"  # always 05
PAN_LOST = "4000000000009987"  # always 41
PAN_STOLEN = "4000000000009979"  # always 43
PAN_LOW_BALANCE = "4000000000009995"  # active, opens with LOW_BALANCE_MINOR (100.00)

_SPECIAL_CARDS: dict[str, CardProfile] = {
    PAN_BLOCKED: CardProfile(LARGE_BALANCE_MINOR, CardStatus.BLOCKED),
    PAN_LOST: CardProfile(LARGE_BALANCE_MINOR, CardStatus.LOST),
    PAN_STOLEN: CardProfile(LARGE_BALANCE_MINOR, CardStatus.STOLEN),
    PAN_LOW_BALANCE: CardProfile(LOW_BALANCE_MINOR, CardStatus.ACTIVE),
} | {pan: CardProfile(LARGE_BALANCE_MINOR, CardStatus.ACTIVE) for pan in WELL_KNOWN_TEST_PANS}

_MIN_BALANCE_MINOR = 20_000  # 200.00
_MAX_BALANCE_MINOR = 500_000  # 5000.00

_STATUS_CODES = {CardStatus.BLOCKED: "05", CardStatus.LOST: "41", CardStatus.STOLEN: "43"}


def card_profile(pan: str) -> CardProfile:
    """Opening balance and status of a card, from a SHA-256 of its PAN (or the special-card table).

    About 2 % of PANs are blocked, 1 % lost and 1 % stolen; balances are spread
    between 200.00 and 5000.00.
    """
    special = _SPECIAL_CARDS.get(pan)
    if special is not None:
        return special
    digest = hashlib.sha256(b"authgw-sim-profile:" + pan.encode()).digest()
    span = _MAX_BALANCE_MINOR - _MIN_BALANCE_MINOR + 1
    balance = _MIN_BALANCE_MINOR + int.from_bytes(digest[:4], "big") % span
    roll = int.from_bytes(digest[4:6], "big") % 1000
    if roll < 20:
        return CardProfile(balance, CardStatus.BLOCKED)
    if roll < 30:
        return CardProfile(balance, CardStatus.LOST)
    if roll < 40:
        return CardProfile(balance, CardStatus.STOLEN)
    return CardProfile(balance, CardStatus.ACTIVE)


def card_token(pan: str) -> str:
    """The card's key in the ledger: a SHA-256 of the PAN (hex, 128 bits kept)."""
    return hashlib.sha256(pan.encode()).hexdigest()[:32]


def luhn_valid(pan: str) -> bool:
    """True for 12-19 decimal digits passing the Luhn check."""
    if not (12 <= len(pan) <= 19 and pan.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def decide(status: CardStatus, available_minor: int, amount_minor: int) -> str:
    """ISO 8583 response code an issuer gives (mirrored by `chaos.redis_ledger`'s authorize script)."""
    code = _STATUS_CODES.get(status)
    if code is not None:
        return code
    return "51" if amount_minor > available_minor else "00"
