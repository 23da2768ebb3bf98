"""One stand-in decision: decide where the fleet's state is, record it durably, answer what was recorded.

    decide(request, reason)
      ├─ static rules (rules.py): MCC group, risk tier, per-transaction maxima
      ├─ Redis up:   DECIDE script (reused id, reversal first, card status, window limits, record)
      │              ──► APPEND to the stream; append failed: record in the local SQLite journal
      ├─ DECIDE's reply lost (a timeout, a broken connection after sending): Redis may hold a
      │              decision nobody was told. Answer 91, recorded locally under a new id: when
      │              Redis is back, the decision told last wins (migrate.py), so the lost one never
      │              reaches the issuer unless a later repeat of the request is answered with it
      ├─ Redis down: decide and record locally (SQLite), limits scaled by LocalSettings.limit_fraction
      └─ nothing could record: decline 91 ("journal.unavailable"); never an approval without a record

A reused request id (same acquirer and id, other content) raises ReusedRequestIdError:
nothing is counted or journaled, the gateway refuses it.

Why two Redis round trips (DECIDE, then APPEND) and not one script doing both on a single
Redis: built and rejected. When such a call times out after Redis ran it, the stream
already holds the decision, but the engine, not knowing it, answers a local decision
which may differ: settlement would then advise an approval the cardholder never got.
With two steps a decision is appended only once the engine knows it, and a timed-out
APPEND is recorded locally with the same content, so a lost reply never makes the
journal disagree with the answer.

Given a tracer, each journal write is an `authgw.standin.journal` span (attribute
authgw.journal.kind: redis | sqlite), a child of the caller's current span.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from opentelemetry.trace import Tracer

from authgw.codes import ResponseCode
from standin.counters import RedisCounters
from standin.crypto import PanKeyring
from standin.entry import encode_entry
from standin.errors import ClosedError, LocalJournalError, StandInError, StoreUnavailableError
from standin.journal import StreamJournal
from standin.outcome import Outcome, Proposal, new_approval_code, new_decision_id
from standin.policy_live import LivePolicy
from standin.recovery import Recovery
from standin.rules import Assessment, StaticDecline, assess
from standin.settings import LocalSettings
from standin.sqlite_journal import SqliteJournal
from standin.sqlite_rules import Local, RequestKey
from standin.tokens import CardTokenizer
from standin.tracing import journal_span, span_failed
from standin.types import JournalKind, Reason, StandInDecision, StandInRequest, mask_pan

__all__ = ["REPLY_LOST_RULE", "UNRECORDED_RULE", "Decider"]

log = logging.getLogger(__name__)

UNRECORDED_RULE = "journal.unavailable"
REPLY_LOST_RULE = "redis.reply_lost"


@dataclass(frozen=True, slots=True)
class Decider:
    """The decision path of one engine (its stores are the engine's, shared with its recovery task)."""

    live: LivePolicy
    """The policy source: each decision reads its current version once (policy_live.py)."""
    tokenizer: CardTokenizer
    keyring: PanKeyring
    counters: RedisCounters
    stream: StreamJournal
    local: SqliteJournal
    recovery: Recovery
    local_settings: LocalSettings
    instance: str
    now_ms: Callable[[], int]
    tracer: Tracer | None = None

    async def decide(
        self,
        request: StandInRequest,
        reason: Reason,
        trace_context: str,
        forced: StaticDecline | None = None,
    ) -> StandInDecision:
        """Decide and record `request` (see the module docstring); `forced` declines whatever the limits.

        Raises ReusedRequestIdError.
        """
        token = self.tokenizer.token(request.pan)
        digest = self.tokenizer.digest(request.content())
        key = RequestKey(token, request.acquirer_id, request.request_id, digest, request.amount_minor)
        policy = self.live.current
        assessment = assess(policy.policy, request)
        if forced is not None:
            assessment = replace(assessment, decline=forced)
        proposal = self._proposal(assessment, reason, policy.version)
        if self.recovery.redis_up:
            try:
                await self.recovery.before_redis_decision(token)
                outcome = await self.counters.decide(token, request, digest, assessment, proposal)
            except StoreUnavailableError as exc:
                self.recovery.mark_down(exc)
                if exc.maybe_applied:
                    lost = StaticDecline(REPLY_LOST_RULE, ResponseCode.ISSUER_UNAVAILABLE)
                    assessment = replace(assessment, decline=lost)
                    # a new id: Redis may hold the old one, which told nobody
                    fresh = self._proposal(assessment, reason, policy.version)
                    proposal = replace(fresh, supersedes=proposal.decision_id)
            else:
                return await self._journal(
                    request, key, assessment, outcome, trace_context, version=policy.version
                )
        return await self._decide_locally(
            request, key, assessment, proposal, trace_context, version=policy.version
        )

    def _proposal(self, assessment: Assessment, reason: Reason, version: int) -> Proposal:
        return Proposal(
            decision_id=new_decision_id(),
            approval_code=new_approval_code(),
            risk_tier=assessment.tier.name,
            reason=reason,
            gateway_instance=self.instance,
            decided_at_ms=self.now_ms(),
            policy_version=version,
        )

    def _fields(
        self, request: StandInRequest, decision: StandInDecision, token: str, trace: str
    ) -> dict[str, str]:
        return encode_entry(request, decision, card_token=token, keyring=self.keyring, trace_context=trace)

    async def _journal(
        self,
        request: StandInRequest,
        key: RequestKey,
        assessment: Assessment,
        outcome: Outcome,
        trace_context: str,
        *,
        version: int,
    ) -> StandInDecision:
        """Append a Redis-counted decision to the stream, or failing that to the local journal."""
        decision = outcome.decision(request.request_id, JournalKind.REDIS, version)
        fields = self._fields(request, decision, key.card_token, trace_context)
        with journal_span(self.tracer, JournalKind.REDIS.value) as span:
            try:
                await self.stream.append(key.card_token, decision.decision_id, fields)
            except StoreUnavailableError as exc:
                span_failed(span, exc)
                self.recovery.mark_down(exc)
            else:
                return decision
        decision = replace(decision, journal=JournalKind.SQLITE)
        fields["journal"] = JournalKind.SQLITE.value
        local = Local(key, assessment.kind, assessment.amount_minor, outcome, counted_in_redis=True)
        with journal_span(self.tracer, JournalKind.SQLITE.value) as span:
            try:
                await self.local.record(local, fields)
            except (LocalJournalError, ClosedError) as exc:
                span_failed(span, exc)
                return self._unrecorded(request, decision, exc)
        self.recovery.local_written(key.card_token)
        return decision

    async def _decide_locally(
        self,
        request: StandInRequest,
        key: RequestKey,
        assessment: Assessment,
        proposal: Proposal,
        trace_context: str,
        *,
        version: int,
    ) -> StandInDecision:
        scaled = assessment.with_limit_fraction(self.local_settings.limit_fraction)

        def build_fields(outcome: Outcome) -> dict[str, str]:
            decision = outcome.decision(request.request_id, JournalKind.SQLITE, version)
            return self._fields(request, decision, key.card_token, trace_context)

        with journal_span(self.tracer, JournalKind.SQLITE.value) as span:
            try:
                outcome = await self.local.decide(key, scaled, proposal, build_fields)
            except (LocalJournalError, ClosedError) as exc:
                span_failed(span, exc)
                unrecorded = self._decline_of(request, proposal, assessment, version)
                return self._unrecorded(request, unrecorded, exc)
        if outcome.fresh:
            self.recovery.local_written(key.card_token)
        return outcome.decision(request.request_id, JournalKind.SQLITE, version)

    def _decline_of(
        self, request: StandInRequest, proposal: Proposal, assessment: Assessment, version: int
    ) -> StandInDecision:
        return StandInDecision(
            decision_id=proposal.decision_id,
            request_id=request.request_id,
            approved=False,
            response_code=ResponseCode.ISSUER_UNAVAILABLE,
            approval_code="",
            rule=UNRECORDED_RULE,
            risk_tier=assessment.tier.name,
            reason=proposal.reason,
            decided_at=datetime.fromtimestamp(self.now_ms() / 1000, UTC),
            gateway_instance=self.instance,
            journal=JournalKind.NONE,
            policy_version=version,
        )

    def _unrecorded(
        self, request: StandInRequest, decision: StandInDecision, exc: StandInError
    ) -> StandInDecision:
        """`decision` recorded nowhere: logged, and answered as a 91 decline under its id."""
        log.error(
            "stand-in decision %s for request %s (card %s) recorded nowhere, declined 91: %s",
            decision.decision_id,
            request.request_id,
            mask_pan(request.pan),
            exc,
        )
        return replace(
            decision,
            approved=False,
            response_code=ResponseCode.ISSUER_UNAVAILABLE,
            approval_code="",
            rule=UNRECORDED_RULE,
            journal=JournalKind.NONE,
        )
