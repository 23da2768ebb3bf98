"""The stand-in engine: decide one authorization when the issuer cannot, and never lose it.

    decide(request, reason)
      ├─ static rules (rules.py): MCC group, risk tier, per-transaction maxima
      ├─ Redis up:   DECIDE script (card status, window limits, idempotency) ──► APPEND to the stream
      │              └─ append failed: record in the local SQLite journal
      ├─ Redis down: decide and record locally (SQLite), limits scaled by LocalSettings.limit_fraction
      └─ nothing could record: decline 91 ("journal.unavailable"); never an approval without a record

After one Redis failure the engine stops asking Redis (each call would cost a
timeout) until its background task (recovery.py) sees Redis answer again, then
moves the local backlog to Redis (migrate.py). A card with local decisions not
yet moved has them moved before its next Redis decision, so the fleet counters
know what this gateway approved while Redis was away.

What holds while Redis is down (and what does not):
  - every answer is still journaled (SQLite, fsynced) or is a 91 decline;
  - card status is the copy from the last sync (statuses pushed since are not seen);
  - each gateway grants a card at most limit_fraction of each limit on its own, on top
    of what Redis had counted: a card's exposure is bounded by
    limit x (1 + limit_fraction x number of gateways deciding for it locally);
  - a request id decided by another gateway before the outage may be decided again
    locally; both decisions are journaled and advised (migrate.py logs the pair). The
    same holds when a DECIDE call times out after Redis ran it: its approval is counted,
    and it is journaled if the request is retried (replayed from the record); the local
    decision answered meanwhile has its own id. Each answer given is journaled; advice
    consumers should expect, rarely, two decisions for one request id.

Why two Redis round trips (DECIDE, then APPEND) and not one script doing both on a single
Redis: tried on 2026-11-27 and rejected. When such a call times out after Redis ran it,
the stream already holds the decision, but the engine, not knowing it, answers a local
decision under the same decision id, which may differ (a local decline, a Redis approval):
settlement then advises an approval the cardholder never got. The chaos test of a total
outage caught exactly that (one declined decision debited). With two steps a decision is
appended only once the engine knows it, and a timed-out APPEND is recorded locally with the
same content, so a lost reply never makes the journal disagree with the answer.

Given a tracer, each journal write is an `authgw.standin.journal` span (attribute
authgw.journal.kind: redis | sqlite), a child of the caller's current span;
a failed Redis append shows as an error span followed by the SQLite one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from opentelemetry.trace import Tracer
from redis.asyncio import Redis

from authgw.codes import ResponseCode
from standin.counters import RedisCounters
from standin.crypto import PanCipher
from standin.entry import encode_entry
from standin.errors import ClosedError, LocalJournalError, StandInError, StoreUnavailableError
from standin.journal import StreamBacklog, StreamJournal
from standin.migrate import BacklogMover
from standin.outcome import Outcome, Proposal, new_approval_code, new_decision_id
from standin.policy import StandInPolicy
from standin.recovery import Recovery
from standin.redis_io import RedisGate, make_redis_client
from standin.rules import Assessment, assess
from standin.settings import JournalSettings, LocalSettings, RedisSettings, StandInConfig
from standin.sqlite_journal import SqliteJournal
from standin.tokens import CardTokenizer
from standin.tracing import journal_span, span_failed
from standin.types import JournalKind, Reason, StandInDecision, StandInRequest, mask_pan

__all__ = ["Clock", "EngineStatus", "StandIn"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Wall-clock time in seconds since the epoch (time.time); injected so tests can move time."""

UNRECORDED_RULE = "journal.unavailable"


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """What an operator or a metric wants to know about stand-in right now."""

    redis_up: bool
    local_backlog: int
    """Decisions in the local journal not yet moved to the Redis stream."""
    oldest_local_ms: int | None
    """decided_at (ms since epoch) of the oldest of them."""


class StandIn:
    """Stand-in decisions with fleet-wide limits and a durable journal.

    Use `async with StandIn(...)` or call start() / close().
    """

    def __init__(
        self,
        *,
        redis: Redis,
        policy: StandInPolicy,
        tokenizer: CardTokenizer,
        cipher: PanCipher,
        sqlite_path: Path,
        instance: str,
        clock: Clock = time.time,
        redis_settings: RedisSettings | None = None,
        journal_settings: JournalSettings | None = None,
        local_settings: LocalSettings | None = None,
        owns_redis: bool = False,
        tracer: Tracer | None = None,
    ) -> None:
        self._policy = policy
        self._tracer = tracer
        self._tokenizer = tokenizer
        self._cipher = cipher
        self._instance = instance
        self._clock = clock
        self._redis_settings = redis_settings or RedisSettings()
        self._local_settings = local_settings or LocalSettings()
        journal_settings = journal_settings or JournalSettings()
        self._redis = redis
        self._owns_redis = owns_redis
        self._gate = RedisGate(
            redis, self._redis_settings.command_deadline, max_concurrency=self._redis_settings.max_connections
        )
        self._counters = RedisCounters(
            self._gate, window=policy.window, idempotency_ttl=journal_settings.idempotency_ttl
        )
        self._stream = StreamJournal(
            self._gate,
            partitions=journal_settings.partitions,
            consumer_group=journal_settings.consumer_group,
            dedupe_ttl=journal_settings.dedupe_ttl,
        )
        self._local = SqliteJournal(sqlite_path, window=policy.window)
        mover = BacklogMover(
            self._local,
            self._counters,
            self._stream,
            batch=self._local_settings.migrate_batch,
            now_ms=self._now_ms,
        )
        self._recovery = Recovery(
            self._gate,
            self._stream,
            self._local,
            mover,
            redis_settings=self._redis_settings,
            local_settings=self._local_settings,
        )
        self._state = _State.NEW
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    def from_config(
        cls,
        config: StandInConfig,
        *,
        redis: Redis | None = None,
        clock: Clock = time.time,
        tracer: Tracer | None = None,
    ) -> StandIn:
        """Build from a loaded config; creates (and then owns) the Redis client unless one is given."""
        return cls(
            redis=redis or make_redis_client(config.redis),
            policy=config.policy,
            tokenizer=CardTokenizer(config.token_key),
            cipher=PanCipher(config.pan_key),
            sqlite_path=config.sqlite_path,
            instance=config.instance,
            clock=clock,
            redis_settings=config.redis,
            journal_settings=config.journal,
            local_settings=config.local,
            owns_redis=redis is None,
            tracer=tracer,
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the local journal, prepare the streams (if Redis answers) and start the background task."""
        if self._state is not _State.NEW:
            raise ClosedError(f"stand-in engine cannot start from state {self._state.value}")
        pending: set[str] = set()
        try:
            await self._local.open()
            pending = await self._local.pending_tokens()
        except LocalJournalError:
            # Start anyway: with Redis up stand-in works; with Redis down it will answer 91.
            log.exception("local journal unavailable, stand-in relies on Redis alone")
        try:
            await self._stream.ensure_groups()
        except StoreUnavailableError as exc:
            self._recovery.mark_down(exc)  # start anyway: stand-in must work without Redis
        self._state = _State.RUNNING
        self._recovery.start(pending, name=f"standin-{self._instance}")

    async def close(self, drain_timeout: timedelta = timedelta(seconds=2)) -> None:
        """Refuse new decisions, let in-flight ones finish, stop the background task, close stores.

        Safe to call twice.
        """
        if self._state in (_State.CLOSING, _State.CLOSED):
            return
        self._state = _State.CLOSING
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout.total_seconds()):
                await self._idle.wait()
        await self._recovery.close()
        await self._local.close()
        if self._owns_redis:
            await self._redis.aclose()
        self._state = _State.CLOSED

    async def __aenter__(self) -> StandIn:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def status(self) -> EngineStatus:
        """Redis health as the engine sees it, and the local backlog."""
        count, oldest = await self._local.backlog()
        return EngineStatus(self._recovery.redis_up, count, oldest)

    async def stream_backlog(self) -> StreamBacklog:
        """Unsettled entries of the Redis streams and the oldest's time (raises StoreUnavailableError)."""
        return await self._stream.backlog()

    async def move_backlog(self) -> int:
        """Move the whole local backlog to Redis now; returns how many decisions were moved.

        Raises StoreUnavailableError or LocalJournalError (what was moved stays moved).
        """
        if self._state is not _State.RUNNING:
            raise ClosedError(f"stand-in engine is {self._state.value}")
        return await self._recovery.move_backlog()

    # -- deciding -----------------------------------------------------------------------------------

    async def decide(
        self, request: StandInRequest, reason: Reason, trace_context: str = ""
    ) -> StandInDecision:
        """Decide `request` in stand-in; the decision is durably journaled before it is returned.

        Args:
            reason: why the gateway asked stand-in.
            trace_context: W3C traceparent of the authorization, stored with the journal entry.

        Raises ClosedError when the engine is not running; every other failure becomes a 91 decline.
        """
        if self._state is not _State.RUNNING:
            raise ClosedError(f"stand-in engine is {self._state.value}")
        self._inflight += 1
        self._idle.clear()
        try:
            return await self._decide(request, reason, trace_context)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _decide(self, request: StandInRequest, reason: Reason, trace_context: str) -> StandInDecision:
        token = self._tokenizer.token(request.pan)
        assessment = assess(self._policy, request)
        proposal = Proposal(
            decision_id=new_decision_id(),
            approval_code=new_approval_code(),
            risk_tier=assessment.tier.name,
            reason=reason,
            gateway_instance=self._instance,
            decided_at_ms=self._now_ms(),
        )
        if self._recovery.redis_up:
            try:
                await self._recovery.before_redis_decision(token)
                outcome = await self._counters.decide(token, request.request_id, assessment, proposal)
            except StoreUnavailableError as exc:
                self._recovery.mark_down(exc)
            else:
                return await self._journal(request, token, assessment, outcome, trace_context)
        return await self._decide_locally(request, token, assessment, proposal, trace_context)

    async def _journal(
        self,
        request: StandInRequest,
        token: str,
        assessment: Assessment,
        outcome: Outcome,
        trace_context: str,
    ) -> StandInDecision:
        """Append a Redis-counted decision to the stream, or failing that to the local journal."""
        decision = outcome.decision(request.request_id, JournalKind.REDIS)
        fields = encode_entry(
            request, decision, card_token=token, cipher=self._cipher, trace_context=trace_context
        )
        with journal_span(self._tracer, JournalKind.REDIS.value) as span:
            try:
                await self._stream.append(token, decision.decision_id, fields)
            except StoreUnavailableError as exc:
                span_failed(span, exc)
                self._recovery.mark_down(exc)
            else:
                return decision
        decision = replace(decision, journal=JournalKind.SQLITE)
        fields["journal"] = JournalKind.SQLITE.value
        with journal_span(self._tracer, JournalKind.SQLITE.value) as span:
            try:
                await self._local.record(
                    token,
                    request.request_id,
                    kind=assessment.kind,
                    amount_minor=assessment.amount_minor,
                    outcome=outcome,
                    fields=fields,
                )
            except (LocalJournalError, ClosedError) as exc:
                span_failed(span, exc)
                return self._unrecorded(request, decision.decision_id, assessment, outcome.reason, exc)
        self._recovery.local_written(token)
        return decision

    async def _decide_locally(
        self,
        request: StandInRequest,
        token: str,
        assessment: Assessment,
        proposal: Proposal,
        trace_context: str,
    ) -> StandInDecision:
        local = assessment.with_limit_fraction(self._local_settings.limit_fraction)

        def build_fields(outcome: Outcome) -> dict[str, str]:
            decision = outcome.decision(request.request_id, JournalKind.SQLITE)
            return encode_entry(
                request, decision, card_token=token, cipher=self._cipher, trace_context=trace_context
            )

        with journal_span(self._tracer, JournalKind.SQLITE.value) as span:
            try:
                outcome = await self._local.decide(token, request.request_id, local, proposal, build_fields)
            except (LocalJournalError, ClosedError) as exc:
                span_failed(span, exc)
                return self._unrecorded(request, proposal.decision_id, assessment, proposal.reason, exc)
        if outcome.fresh:
            self._recovery.local_written(token)
        return outcome.decision(request.request_id, JournalKind.SQLITE)

    def _unrecorded(
        self,
        request: StandInRequest,
        decision_id: str,
        assessment: Assessment,
        reason: Reason,
        exc: StandInError,
    ) -> StandInDecision:
        log.error(
            "stand-in decision %s for request %s (card %s) recorded nowhere, declined 91: %s",
            decision_id,
            request.request_id,
            mask_pan(request.pan),
            exc,
        )
        return StandInDecision(
            decision_id=decision_id,
            request_id=request.request_id,
            approved=False,
            response_code=ResponseCode.ISSUER_UNAVAILABLE,
            approval_code="",
            rule=UNRECORDED_RULE,
            risk_tier=assessment.tier.name,
            reason=reason,
            decided_at=datetime.fromtimestamp(self._now_ms() / 1000, UTC),
            gateway_instance=self._instance,
            journal=JournalKind.NONE,
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
