"""Card expiry (YYMM, ISO 8583 field 14): when a card stops being valid, the same for every decider.

A card is valid through the last day of its expiry month and expired from the first day of the
next month, 00:00 UTC (the card schemes' rule; UTC rather than the cardholder's zone, so that a
gateway, stand-in and an issuer simulator in different zones agree). Stand-in and the issuer
simulator both decline an expired card with 54; the edges check only that the text is a YYMM.

YY is the year in the 21st century (2000-2099): a card issued today expires within about ten
years, so there is no ambiguity to resolve.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["card_expired", "expiry_problem"]


def expiry_problem(text: str) -> str | None:
    """None for a well-formed YYMM, else the rule (to follow the field's name)."""
    if len(text) != 4 or not (text.isascii() and text.isdigit()):
        return "must be YYMM: 4 digits"
    if not 1 <= int(text[2:]) <= 12:
        return "must be YYMM: month 01-12"
    return None


def card_expired(expiry: str, at: datetime) -> bool:
    """Whether a card expiring `expiry` (a well-formed YYMM) is expired at `at` (an aware datetime)."""
    year, month = 2000 + int(expiry[:2]), int(expiry[2:])
    first_invalid = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return at >= first_invalid
