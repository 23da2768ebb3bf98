"""One reversal in stand-in: release what a stand-in approval drew, or record the reversal for the issuer.

    reverse(reversal, store)
      ├─ Redis up:   REVERSE script (lua.py), idempotent by (acquirer, reversal id):
      │                the original is a stand-in decision   → applied (window released, and its
      │                                                        exposure budget reservation) or no effect
      │                it is a stand-in decline              → declined: no effect, journaled all the
      │                                                        same (a merge may still approve it)
      │                it is not, and the card has entries   → stored: held for a late original,
      │                the issuer has not acknowledged          journaled behind those entries
      │                nothing of the card waits (store off) → FORWARD: the caller sends it to the
      │                                                        issuer now, and calls again with
      │                                                        store on if no issuer answers
      │              ──► APPEND the reversal's entry (settlement forwards it: IssuerHost/Reverse);
      │                  append failed: recorded in the local journal, moved later
      └─ Redis down (or its reply lost): the local journal's rules (sqlite_rules.py) against this
                     gateway's own rows, recorded and moved to Redis later (REVERSE, then APPEND)

A reversal is never refused once recorded. When nothing can record it (Redis and the
local journal both down), StoreUnavailableError: the gateway may still forward it to a
live issuer, or the acquirer repeats it (it is idempotent).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry.trace import Tracer

from standin.counters import RedisCounters, ReversalKey
from standin.crypto import PanKeyring
from standin.entry import encode_reversal
from standin.errors import ClosedError, LocalJournalError, StoreUnavailableError
from standin.exposure import ExposureBudgets
from standin.journal import StreamJournal
from standin.recovery import Recovery
from standin.sqlite_journal import SqliteJournal
from standin.tokens import CardTokenizer
from standin.tracing import journal_span, span_failed
from standin.types import JournalKind, ReversalOutcome, ReversalStatus, StandInReversal

__all__ = ["Reverser", "new_reversal_entry_id"]

_JOURNALED = frozenset({ReversalStatus.APPLIED, ReversalStatus.STORED, ReversalStatus.DECLINED})


def new_reversal_entry_id() -> str:
    return f"rev-{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class Reverser:
    """The reversal path of one engine (its stores are the engine's)."""

    tokenizer: CardTokenizer
    keyring: PanKeyring
    counters: RedisCounters
    stream: StreamJournal
    local: SqliteJournal
    recovery: Recovery
    instance: str
    now_ms: Callable[[], int]
    tracer: Tracer | None = None
    budgets: ExposureBudgets | None = None
    """Given, an applied reversal also gives back what its approval reserved (exposure.py)."""

    async def reverse(
        self, reversal: StandInReversal, *, store: bool, trace_context: str = ""
    ) -> ReversalOutcome:
        """Apply or record `reversal` (see the module docstring); raises StoreUnavailableError."""
        token = self.tokenizer.token(reversal.pan)
        entry_id = new_reversal_entry_id()
        if self.recovery.redis_up:
            key = ReversalKey(
                reversal.acquirer_id, reversal.reversal_id, reversal.original_request_id,
                reversal.final_amount_minor, reversal.original_amount_minor,
            )  # fmt: skip
            try:
                await self.recovery.before_redis_decision(token)  # the card's local entries go first
                status, entry_id, _, released = await self.counters.reverse(
                    token, key, entry_id=entry_id, store=store
                )
            except StoreUnavailableError as exc:
                self.recovery.mark_down(exc)
            else:
                if released is not None and self.budgets is not None:
                    await self.budgets.reversed(token, released)
                if status not in _JOURNALED:
                    return ReversalOutcome(status, "", JournalKind.NONE)
                return await self._journal(reversal, token, entry_id, status, trace_context)
        return await self._locally(reversal, token, entry_id, trace_context)

    def _fields(
        self,
        reversal: StandInReversal,
        token: str,
        entry_id: str,
        status: ReversalStatus,
        *,
        journal: JournalKind,
        trace_context: str,
    ) -> dict[str, str]:
        return encode_reversal(
            reversal,
            entry_id=entry_id,
            card_token=token,
            keyring=self.keyring,
            status=status,
            decided_at=datetime.fromtimestamp(self.now_ms() / 1000, UTC),
            gateway_instance=self.instance,
            journal=journal,
            trace_context=trace_context,
        )

    async def _journal(
        self, reversal: StandInReversal, token: str, entry_id: str, status: ReversalStatus, trace_context: str
    ) -> ReversalOutcome:
        fields = self._fields(
            reversal, token, entry_id, status, journal=JournalKind.REDIS, trace_context=trace_context
        )
        with journal_span(self.tracer, JournalKind.REDIS.value) as span:
            try:
                await self.stream.append(token, entry_id, fields)
            except StoreUnavailableError as exc:
                span_failed(span, exc)
                self.recovery.mark_down(exc)
            else:
                return ReversalOutcome(status, entry_id, JournalKind.REDIS)
        local = await self._locally(reversal, token, entry_id, trace_context)
        return ReversalOutcome(status, local.entry_id, local.journal)  # what Redis said stands

    async def _locally(
        self, reversal: StandInReversal, token: str, entry_id: str, trace_context: str
    ) -> ReversalOutcome:
        def build_fields(status: ReversalStatus) -> dict[str, str]:
            return self._fields(
                reversal, token, entry_id, status, journal=JournalKind.SQLITE, trace_context=trace_context
            )

        with journal_span(self.tracer, JournalKind.SQLITE.value) as span:
            try:
                status, entry_id, new = await self.local.reverse(
                    token, reversal, entry_id, build_fields, self.now_ms()
                )
            except (LocalJournalError, ClosedError) as exc:
                span_failed(span, exc)
                raise StoreUnavailableError(
                    f"reversal {reversal.reversal_id}: neither Redis nor the local journal can record it"
                ) from exc
        if new and status in _JOURNALED:
            self.recovery.local_written(token)
        return ReversalOutcome(status, entry_id if status in _JOURNALED else "", JournalKind.SQLITE)
