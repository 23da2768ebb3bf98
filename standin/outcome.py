"""What the engine proposes for a decision, and what a store (Redis or SQLite) decided.

The engine mints the decision id and approval code before asking a store, so
that a store records a complete decision in one atomic step; when the store
already holds a decision for the request id, that earlier one wins.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from authgw.codes import ResponseCode
from standin.types import JournalKind, Reason, StandInDecision

__all__ = ["Outcome", "Proposal", "new_approval_code", "new_decision_id"]

# ISO 8583 field 38 is 6 alphanumerics; no I/O (read as 1/0 when spoken or retyped).
_APPROVAL_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def new_decision_id() -> str:
    return uuid.uuid4().hex


def new_approval_code() -> str:
    # One 64-bit draw (not six): 34^6 is ~2^31, so the modulo bias is ~2^-33.
    n = secrets.randbits(64)
    code = []
    for _ in range(6):
        n, digit = divmod(n, len(_APPROVAL_ALPHABET))
        code.append(_APPROVAL_ALPHABET[digit])
    return "".join(code)


@dataclass(frozen=True, slots=True)
class Proposal:
    """The identity a new decision gets if its request has not been decided before."""

    decision_id: str
    approval_code: str
    risk_tier: str
    reason: Reason
    gateway_instance: str
    decided_at_ms: int
    supersedes: str = ""
    """The id of a Redis call for this request whose reply was lost (its decision told nobody)."""
    policy_version: int = 0
    """The stand-in policy version deciding (kept in the request's Redis record)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision as a store recorded it."""

    fresh: bool
    """False when the request had already been decided (this is that earlier decision)."""
    decision_id: str
    response_code: ResponseCode
    rule: str
    approval_code: str
    risk_tier: str
    reason: Reason
    decided_at_ms: int
    gateway_instance: str
    answered_at_ms: int = 0
    """The last time this decision was given to the acquirer (0: at decided_at_ms)."""
    policy_version: int | None = None
    """The policy version its record holds (None: a record without one, e.g. made locally)."""

    @classmethod
    def from_record(cls, fresh: bool, values: list[str]) -> Outcome:
        """Build from the record values in lua.RECORD_FIELDS order."""
        decision_id, code, rule, approval, tier, reason, at_ms, instance, answered = values
        answered_ms = int(answered) if answered else int(at_ms)
        return cls(
            fresh, decision_id, ResponseCode(code), rule, approval, tier, Reason(reason), int(at_ms),
            instance, answered_ms,
        )  # fmt: skip

    @property
    def answered_ms(self) -> int:
        return self.answered_at_ms or self.decided_at_ms

    def record_values(self) -> list[str]:
        """The record values in lua.RECORD_FIELDS order."""
        return [
            self.decision_id,
            self.response_code.value,
            self.rule,
            self.approval_code,
            self.risk_tier,
            self.reason.value,
            str(self.decided_at_ms),
            self.gateway_instance,
            str(self.answered_ms),
        ]

    def decision(self, request_id: str, journal: JournalKind, policy_version: int = 0) -> StandInDecision:
        """The decision as answered; `policy_version`: the engine's, when the record holds none."""
        return StandInDecision(
            decision_id=self.decision_id,
            request_id=request_id,
            approved=self.response_code.approved,
            response_code=self.response_code,
            approval_code=self.approval_code,
            rule=self.rule,
            risk_tier=self.risk_tier,
            reason=self.reason,
            decided_at=datetime.fromtimestamp(self.decided_at_ms / 1000, UTC),
            gateway_instance=self.gateway_instance,
            journal=journal,
            answered_at=datetime.fromtimestamp(self.answered_ms / 1000, UTC),
            repeated=not self.fresh,
            policy_version=policy_version if self.policy_version is None else self.policy_version,
        )
