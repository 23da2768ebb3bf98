"""One stand-in decision: decide where the fleet's state is, record it durably, answer what was recorded.

    decide(request, reason)
      ├─ static rules (rules.py): MCC group, risk tier, verification results, per-transaction maxima
      ├─ Redis up:   fleet steps (fleet_risk.py), each in its own slot: merchant/terminal velocity,
      │              exposure budget reserve; then the card's DECIDE; then the release of the
      │              reservation (unless a fresh approval) beside the APPEND
      ├─ Redis up:   DECIDE script (reused id, reversal first, card status, window limits, record)
      │              ──► APPEND to the stream; append failed: record in the local SQLite journal
      ├─ DECIDE's reply lost (a timeout, a broken connection after sending): Redis may hold a
      │              decision nobody was told. Answer 91, recorded locally under a new id: when
      │              Redis is back, the decision told last wins (migrate.py), so the lost one never
      │              reaches the issuer unless a later repeat of the request is answered with it
      ├─ Redis down: decide and record locally (SQLite), limits scaled by LocalSettings.limit_fraction,
      │              velocity windows kept in this gateway's memory (its share of each)
      └─ nothing could record: decline 91 ("journal.unavailable"); never an approval without a record

    advise(request, kind)       an acquirer advice (money already spent) takes the same path with the
                                static rules, card status and limits switched off: recorded approved
                                under acquirer.forced_post / acquirer.offline and counted in the window;
                                its reply lost, it stays an approval (a new id, the lost one superseded)

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

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from opentelemetry.trace import Tracer

from authgw.codes import ResponseCode
from standin.counters import RedisCounters
from standin.crypto import PanKeyring
from standin.entry import encode_entry
from standin.errors import (
    ClosedError,
    LocalJournalError,
    ReusedRequestIdError,
    StandInError,
    StoreUnavailableError,
)
from standin.fleet_risk import FleetRisk
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
from standin.types import AcquirerAdviceKind, JournalKind, Reason, StandInDecision, StandInRequest, mask_pan

__all__ = ["REPLY_LOST_RULE", "UNRECORDED_RULE", "Decider"]

log = logging.getLogger(__name__)

UNRECORDED_RULE = "journal.unavailable"
REPLY_LOST_RULE = "redis.reply_lost"
REUSED_RULE = "request_id.reused"  # the declined advice of a reused id's content (_refused_reuse)


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
    risk: FleetRisk
    instance: str
    now_ms: Callable[[], int]
    tracer: Tracer | None = None

    async def decide(
        self,
        request: StandInRequest,
        reason: Reason,
        trace_context: str,
        forced: StaticDecline | None = None,
        *,
        again: bool = False,
    ) -> StandInDecision:
        """Decide and record `request` (see the module docstring); `forced` declines whatever the limits.

        `again`: an attempt for this request may have reached an issuer, which may answer it itself
        (a late approval): a replayed decision is journaled again with its new answered_at, so the
        issuer learns that this decision, not its own answer, was the acquirer's last; a reused
        request id is refused after journaling a declined advice of its content (_refused_reuse).
        Raises ReusedRequestIdError.
        """
        policy = self.live.current
        assessment = assess(policy.policy, request)
        if forced is not None:
            assessment = assessment.declined_by(forced)
        try:
            return await self._decide(
                request,
                reason,
                trace_context,
                assessment,
                approval_code="",
                version=policy.version,
                again=again,
            )
        except ReusedRequestIdError:
            if again:  # the issuer may hold an approval of this content
                await self._refused_reuse(request, reason, trace_context)
            raise

    async def advise(
        self, request: StandInRequest, kind: AcquirerAdviceKind, approval_code: str, trace_context: str
    ) -> StandInDecision:
        """Record an acquirer advice: approved and counted whatever the limits (lua.DECIDE's advice_rule).

        A repeat, or an approval of the same request already on record, is that decision again.
        Raises ReusedRequestIdError; a 91 decline comes back only when nothing could record it.
        """
        policy = self.live.current
        assessment = replace(
            assess(policy.policy, request), decline=None, known_decline=None, advised=kind.rule
        )
        return await self._decide(
            request,
            Reason.ACQUIRER_ADVICE,
            trace_context,
            assessment,
            approval_code=approval_code,
            version=policy.version,
        )

    async def _decide(
        self,
        request: StandInRequest,
        reason: Reason,
        trace_context: str,
        assessment: Assessment,
        *,
        approval_code: str,
        version: int,
        again: bool = False,
    ) -> StandInDecision:
        key = self.key_of(request)
        proposal = self._proposal(assessment, reason, version, approval_code)
        if self.recovery.redis_up:
            decided = await self._decide_in_redis(
                request, key, assessment, proposal, trace_context, again=again
            )
            if isinstance(decided, StandInDecision):
                return decided
            assessment, proposal = decided
        decision = await self._decide_locally(
            request, key, assessment, proposal, trace_context, version=version
        )
        if decision.approved:
            self.risk.budgets.keep(decision.decision_id)
        return decision

    async def _decide_in_redis(
        self,
        request: StandInRequest,
        key: RequestKey,
        assessment: Assessment,
        proposal: Proposal,
        trace_context: str,
        *,
        again: bool,
    ) -> StandInDecision | tuple[Assessment, Proposal]:
        """The fleet's decision, or (after a Redis failure) what the local decision should use."""
        token = key.card_token
        try:
            await self.recovery.before_redis_decision(token)
            admitted, held = await self.risk.admit(
                token, request, key.digest, assessment, proposal.decision_id
            )
        except StoreUnavailableError as exc:
            self.recovery.mark_down(exc)  # no card decision was asked: decide locally as planned
            return assessment, proposal
        try:
            outcome = await self.counters.decide(token, request, key.digest, admitted, proposal, again=again)
        except ReusedRequestIdError:
            await self.risk.budgets.release(held)
            raise
        except StoreUnavailableError as exc:
            self.recovery.mark_down(exc)
            if not exc.maybe_applied:
                self.risk.budgets.orphans.update(held)
                return admitted, proposal
            # Redis may hold an approval nobody was told: its reservation stays (exposure.py).
            lost = admitted
            if not admitted.advised:  # an advice stays an approval: it is already spent
                lost = admitted.declined_by(StaticDecline(REPLY_LOST_RULE, ResponseCode.ISSUER_UNAVAILABLE))
            # a new id: Redis may hold the old one, which told nobody
            fresh = self._proposal(
                lost, proposal.reason, proposal.policy_version, proposal.approval_code if lost.advised else ""
            )
            return lost, replace(fresh, supersedes=proposal.decision_id)
        decision, _ = await asyncio.gather(
            self._journal(
                request,
                key,
                admitted,
                outcome,
                trace_context,
                version=proposal.policy_version,
                again=again and not outcome.fresh,
            ),
            self.risk.settle(held, outcome, proposal.decision_id),
        )
        return decision

    async def _refused_reuse(self, request: StandInRequest, reason: Reason, trace_context: str) -> None:
        """`request` reuses a request id for other content and is refused, after an attempt that may
        have reached an issuer, which may then hold an approval of this content: journal a declined
        decision of this content (94, request_id.reused; a new id, the request's record untouched)
        so settlement advises it and the issuer releases what it holds for this content (an advice
        of other content gets a book of its own there). If Redis cannot take it, it goes to the local
        journal as an append-only row (sqlite_rules.APPEND_ONLY), apart from the request's rows."""
        key = self.key_of(request)
        token = key.card_token
        now = self.now_ms()
        outcome = Outcome(
            fresh=True,
            decision_id=new_decision_id(),
            response_code=ResponseCode.DUPLICATE_TRANSMISSION,
            rule=REUSED_RULE,
            approval_code="",
            risk_tier="",
            reason=reason,
            decided_at_ms=now,
            gateway_instance=self.instance,
            answered_at_ms=now,
        )
        decision = outcome.decision(request.request_id, JournalKind.REDIS, self.live.current.version)
        fields = self._fields(request, decision, token, trace_context)
        counted = False
        try:
            await self.counters.count_unadvised(token)  # first: a failed append over-counts (safe side)
            counted = True
            await self.stream.append(token, decision.decision_id, fields)
        except StoreUnavailableError as exc:
            self.recovery.mark_down(exc)
        else:
            return
        assessment = assess(self.live.current.policy, request)
        try:
            await self._keep_locally(
                key, assessment, outcome, fields, marker=decision.decision_id, counted=counted
            )
        except (LocalJournalError, ClosedError) as exc:
            log.error(  # noqa: TRY400 (the message says it all)
                "request %s reused its id after an attempt that may have reached an issuer; "
                "its declined advice could be recorded nowhere: %s", request.request_id, exc,
            )  # fmt: skip

    def key_of(self, request: StandInRequest) -> RequestKey:
        """The request's card token, ids and keyed content digest (its record's key and its check)."""
        token = self.tokenizer.token(request.pan)
        digest = self.tokenizer.digest(request.content())
        return RequestKey(token, request.acquirer_id, request.request_id, digest, request.amount_minor)

    async def _keep_locally(
        self,
        key: RequestKey,
        assessment: Assessment,
        outcome: Outcome,
        fields: dict[str, str],
        *,
        marker: str,
        counted: bool,
    ) -> None:
        """Record in the local journal what Redis decided but could not append (moved later);
        `marker`: an append-only row under this dedupe marker ('' = the decision's own row).
        Raises LocalJournalError or ClosedError."""
        fields["journal"] = JournalKind.SQLITE.value
        local = Local(key, assessment.kind, assessment.amount_minor, outcome, counted_in_redis=counted)
        await self.local.record(local, fields, marker=marker)
        self.recovery.local_written(key.card_token)

    def _proposal(
        self, assessment: Assessment, reason: Reason, version: int, approval_code: str = ""
    ) -> Proposal:
        return Proposal(
            decision_id=new_decision_id(),
            approval_code=approval_code or new_approval_code(),
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
        again: bool = False,
    ) -> StandInDecision:
        """Append a Redis-counted decision to the stream, or failing that to the local journal.

        `again`: a replay, appended once more with its new answered_at ("again" = "1" in the entry;
        settlement sends it even though the decision id is settled). If that append fails, the
        entry given again goes to the local journal like any other (its own row, moved later under
        its once-per marker): else the issuer keeps the earlier answered_at and its own late
        approval (chaos-money: declines_debited).
        """
        decision = outcome.decision(request.request_id, JournalKind.REDIS, version)
        fields = self._fields(request, decision, key.card_token, trace_context)
        once_per = ""
        if again:
            fields["again"] = "1"
            once_per = f"{decision.decision_id}@{outcome.answered_ms}"
        with journal_span(self.tracer, JournalKind.REDIS.value) as span:
            try:
                await self.stream.append(key.card_token, decision.decision_id, fields, once_per=once_per)
            except StoreUnavailableError as exc:
                span_failed(span, exc)
                self.recovery.mark_down(exc)
            else:
                return decision
        with journal_span(self.tracer, JournalKind.SQLITE.value) as span:
            try:
                await self._keep_locally(key, assessment, outcome, fields, marker=once_per, counted=True)
            except (LocalJournalError, ClosedError) as exc:
                span_failed(span, exc)
                if again:  # journaled once already: answer what the record says (a 91 would not be)
                    log.error(  # noqa: TRY400 (the message says it all)
                        "decision %s given again to request %s, journaled again nowhere: %s",
                        decision.decision_id, request.request_id, exc,
                    )  # fmt: skip
                    return decision
                return self._unrecorded(request, decision, exc)
        return replace(decision, journal=JournalKind.SQLITE)

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
        scaled = self.risk.admit_locally(request, key.digest, scaled, proposal.decided_at_ms)

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
