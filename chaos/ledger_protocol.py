"""What every issuer-simulator ledger speaks: the `Ledger` protocol, its records, its errors.

A ledger keeps what happened to cards after their opening state
(`chaos.card_profiles`): holds by request_id and posted advices by
decision_id, each recorded once. `chaos.memory_ledger` and
`chaos.redis_ledger` implement it.

Errors::

    LedgerError                 root of the ledger's errors
    └── LedgerUnavailable       the back-end cannot be reached in time (retry later)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "AdviceEntry",
    "AdviceRecord",
    "HoldAttempt",
    "IssuerAnswer",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
]


class LedgerError(Exception):
    """Root of the ledger's errors."""


class LedgerUnavailable(LedgerError):
    """The ledger back-end did not answer in time; nothing can be said about the call."""


@dataclass(frozen=True, slots=True)
class HoldAttempt:
    """An authorization to decide; decision_id and approval_code are used only if request_id is new."""

    request_id: str
    pan: str
    amount_minor: int
    decision_id: str
    approval_code: str
    pool: str
    member: str


@dataclass(frozen=True, slots=True)
class IssuerAnswer:
    """The issuer's answer to a request_id: the first one ever given, whichever host gave it."""

    response_code: str
    approval_code: str  # empty unless response_code is "00"
    decision_id: str
    pool: str
    member: str
    repeated: bool  # the request_id was already known: this is the stored answer


@dataclass(frozen=True, slots=True)
class AdviceEntry:
    """A stand-in decision to post."""

    decision_id: str
    pan: str
    approved: bool
    amount_minor: int
    response_code: str
    request_id: str = ""


@dataclass(slots=True)
class AdviceRecord:
    """What the ledger recorded of one decision_id."""

    decision_id: str
    received: int
    applied: bool
    amount_minor: int
    response_code: str
    request_id: str = ""


class Ledger(Protocol):
    """An issuer back-end: balances, holds by request_id, advices by decision_id."""

    async def authorize(self, attempt: HoldAttempt) -> IssuerAnswer:
        """Decide and hold once per request_id; repeat the stored answer afterwards."""
        ...

    async def advise(self, advice: AdviceEntry) -> bool:
        """Record once per decision_id (debit if approved); True when it was a duplicate."""
        ...

    async def advices(self) -> list[AdviceRecord]:
        """Every advice recorded, in order of first arrival."""
        ...

    async def advice_order(self, pan: str) -> list[str]:
        """decision_ids of one card's advices in order of first arrival."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...
