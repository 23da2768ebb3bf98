"""What settlement hands the issuer side: an Advice or a ReversalAdvice, the SendResult, the Protocols.

standin knows nothing of gRPC: the gateway implements `AdviceSender` (IssuerHost/Advise and
IssuerHost/Reverse over its pool members' channels) and `IssuerHealth` (is some pool healthy
again?), and injects them.

SendOutcome, as the settlement worker treats it:

    ACKED       the issuer recorded the advice now                       -> acknowledged, settled
    DUPLICATE   the issuer already had this decision_id (no new effect)   -> acknowledged, settled
    REJECTED    the issuer answered "no" (e.g. FAILED_PRECONDITION)       -> retried, dead letter after
                                                                             max_attempts
    POISON      the issuer says the advice itself is malformed            -> dead letter at once: sending
                (INVALID_ARGUMENT); resending the same bytes cannot help     it again cannot help
    FAILED      no verdict: unreachable, timed out, overloaded            -> stays in the journal; counts
                                                                             toward pausing settlement
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from standin.engine import EngineStatus
from standin.types import StandInDecision, StandInRequest, StandInReversal

__all__ = [
    "Advice",
    "AdviceSender",
    "BacklogSource",
    "IssuerHealth",
    "JournalItem",
    "ReversalAdvice",
    "SendOutcome",
    "SendResult",
]


@dataclass(frozen=True, slots=True)
class Advice:
    """One journaled stand-in decision to advise the issuer of (the request's PAN is clear; repr hides it)."""

    request: StandInRequest
    decision: StandInDecision
    card_token: str
    trace_context: str
    """W3C traceparent of the original authorization ('' when it was not traced)."""
    partition: int
    stream_id: str
    """Id of the journal entry in its partition stream."""

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def order_at(self) -> datetime:
        """Where it goes in its card's chain (decision time)."""
        return self.decision.decided_at


@dataclass(frozen=True, slots=True)
class ReversalAdvice:
    """One journaled reversal to forward to the issuer, in its card's order (PAN clear; repr hides it)."""

    reversal: StandInReversal
    entry_id: str
    card_token: str
    trace_context: str
    partition: int
    stream_id: str
    decided_at: datetime
    gateway_instance: str

    @property
    def decision_id(self) -> str:
        return self.entry_id

    @property
    def order_at(self) -> datetime:
        return self.decided_at


JournalItem = Advice | ReversalAdvice
"""What one journal entry asks settlement to send."""


class SendOutcome(enum.Enum):
    """What the issuer made of one advice (see the module docstring)."""

    ACKED = "acked"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    POISON = "poison"
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        """The issuer has the decision: the journal entry may be acknowledged."""
        return self in (SendOutcome.ACKED, SendOutcome.DUPLICATE)

    @property
    def answered(self) -> bool:
        """The issuer answered (whatever it said): it is up, which is what pacing wants to know."""
        return self is not SendOutcome.FAILED


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send, with the issuer's explanation when it said no."""

    outcome: SendOutcome
    detail: str = ""
    """Why it failed or was rejected (no PAN: senders mask card numbers)."""
    target: str = ""
    """Which issuer host answered, e.g. "primary/a1" ('' when none was reachable)."""


class AdviceSender(Protocol):
    """Delivers advices and reversals to the issuer (implemented at the gateway's edge over gRPC)."""

    async def send(self, advice: Advice, *, deadline: timedelta) -> SendResult:
        """Send `advice` once, within `deadline`; never raises for issuer failures (FAILED instead)."""
        ...

    async def reverse(self, advice: ReversalAdvice, *, deadline: timedelta) -> SendResult:
        """Forward a reversal once, within `deadline`; never raises for issuer failures."""
        ...


IssuerHealth = Callable[[], bool]
"""True when some issuer pool is healthy; settlement sends nothing while it is False."""


class BacklogSource(Protocol):
    """The local SQLite backlog of the gateway's stand-in engine (StandIn satisfies it)."""

    async def status(self) -> EngineStatus:
        """Redis health as the engine sees it, and the local backlog."""
        ...
