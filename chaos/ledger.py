"""The issuer simulator's accounts: card profiles, holds, advices, idempotency.

Cards are deterministic from the PAN (`card_profile`), so every simulator host
of an issuer, and every test, agrees on a card's opening balance and status
without any set-up. A `Ledger` keeps what happened afterwards: holds by
request_id and posted advices by decision_id, each recorded once.

`MemoryLedger` is one host's private back-end (the default). `RedisLedger` is
an issuer-wide back-end shared by several hosts (all hosts of all pools of one
issuer): idempotency and balances are then issuer-wide. Its Lua scripts touch
only keys tagged with the card's token (`authgw:sim:{<sha256 of PAN>}:…`), so
each runs in one Redis Cluster slot; no PAN is ever written to Redis.

Where each part lives: card profiles in `chaos.card_profiles`, the protocol,
records and errors in `chaos.ledger_protocol`, the back-ends in
`chaos.memory_ledger` and `chaos.redis_ledger`. This module gathers their
public names, so callers need only `chaos.ledger`.

Errors::

    LedgerError                 root of this module's errors
    └── LedgerUnavailable       the back-end cannot be reached in time (retry later)
"""

from __future__ import annotations

from chaos.card_profiles import (
    LARGE_BALANCE_MINOR,
    LOW_BALANCE_MINOR,
    PAN_BLOCKED,
    PAN_LOST,
    PAN_LOW_BALANCE,
    PAN_STOLEN,
    WELL_KNOWN_TEST_PANS,
    CardProfile,
    CardStatus,
    card_profile,
    card_token,
    decide,
    luhn_valid,
)
from chaos.ledger_protocol import (
    AdviceEntry,
    AdviceRecord,
    HoldAttempt,
    IssuerAnswer,
    Ledger,
    LedgerError,
    LedgerUnavailable,
)
from chaos.memory_ledger import MemoryLedger
from chaos.redis_ledger import RedisLedger

__all__ = [
    "LARGE_BALANCE_MINOR",
    "LOW_BALANCE_MINOR",
    "PAN_BLOCKED",
    "PAN_LOST",
    "PAN_LOW_BALANCE",
    "PAN_STOLEN",
    "WELL_KNOWN_TEST_PANS",
    "AdviceEntry",
    "AdviceRecord",
    "CardProfile",
    "CardStatus",
    "HoldAttempt",
    "IssuerAnswer",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "MemoryLedger",
    "RedisLedger",
    "card_profile",
    "card_token",
    "decide",
    "luhn_valid",
]
