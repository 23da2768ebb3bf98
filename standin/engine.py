"""The stand-in engine: decide authorizations and apply reversals when the issuer cannot, never losing one.

    decide(request, reason)     deciding.py: fleet-wide steps in their own slots (velocity.py,
                                exposure.py), the card's counters in Redis (one script), the
                                journal (Redis stream, local SQLite when Redis is away), 91 when
                                nothing can record; a reused request id is refused
    decline(request, rule)      the same path with a forced 91: the gateway's own decline after an
                                attempt that may have reached an issuer, recorded so the issuer is
                                told (its late approval must not stand)
    advise(request, kind)       an acquirer advice: the same path, approved and counted whatever the
                                limits (money already spent), journaled in the card's partition
    reverse(reversal, store)    reversing.py: release a stand-in approval, or record the reversal
                                for the issuer, in the card's order

After one Redis failure the engine stops asking Redis (each call would cost a
timeout) until its background task (recovery.py) sees Redis answer again, then
moves the local backlog to Redis (migrate.py). A card with local entries not yet
moved has them moved before its next Redis step, so the fleet counters know what
this gateway approved or reversed while Redis was away.

What holds while Redis is down (and what does not):
  - every answer is still journaled (SQLite, fsynced) or is a 91 decline;
  - card status is the copy from the last sync (statuses pushed since are not seen);
  - each gateway grants a card at most limit_fraction of each limit on its own, on top
    of what Redis had counted: a card's exposure is bounded by
    limit x (1 + limit_fraction x number of gateways deciding for it locally);
  - likewise each gateway approves at most limit_fraction of each exposure budget on its own,
    and admits at most limit_fraction of each velocity window (kept in its memory);
  - a request decided elsewhere through Redis may be decided again here; when Redis is
    back the decision the acquirer was told last wins and only it is advised (migrate.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from opentelemetry.trace import Tracer

from authgw.codes import ResponseCode
from standin.balances import BalanceSettings, CardBalances
from standin.counters import RedisCounters
from standin.crypto import PanKeyring
from standin.deciding import UNRECORDED_RULE, Decider
from standin.errors import ClosedError, LocalJournalError, StoreUnavailableError
from standin.exposure import BudgetExposure, ExposureBudgets
from standin.fleet_risk import FleetRisk
from standin.journal import StreamBacklog, StreamJournal
from standin.migrate import BacklogMover
from standin.policy import StandInPolicy
from standin.policy_live import FILE_VERSION, LivePolicy, VersionedPolicy
from standin.recovery import Recovery
from standin.redis_config import RedisRole
from standin.redis_durable import RedisClient
from standin.redis_io import RedisGate
from standin.redis_link import RedisLink
from standin.reversing import Reverser
from standin.rules import StaticDecline
from standin.settings import JournalSettings, LocalSettings, RedisSettings, StandInConfig
from standin.sqlite_journal import SqliteJournal
from standin.tokens import CardTokenizer
from standin.types import (
    AcquirerAdviceKind,
    Reason,
    ReversalOutcome,
    StandInDecision,
    StandInRequest,
    StandInReversal,
)
from standin.velocity import VelocityWindows

__all__ = ["UNRECORDED_RULE", "Clock", "EngineStatus", "StandIn"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Wall-clock time in seconds since the epoch (time.time); injected so tests can move time."""


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
    local_by_pan_key: dict[str, int] = field(default_factory=dict)
    """The same backlog by the id of the PAN key that sealed each entry (key rotation)."""


class StandIn:
    """Stand-in decisions with fleet-wide limits and a durable journal.

    Use `async with StandIn(...)` or call start() / close().
    """

    def __init__(
        self,
        *,
        redis: RedisClient,
        policy: StandInPolicy,
        tokenizer: CardTokenizer,
        keyring: PanKeyring,
        sqlite_path: Path,
        instance: str,
        clock: Clock = time.time,
        redis_settings: RedisSettings | None = None,
        journal_settings: JournalSettings | None = None,
        local_settings: LocalSettings | None = None,
        owns_redis: bool = False,
        tracer: Tracer | None = None,
        link: RedisLink | None = None,
        policy_source: str = "policy file",
        balance_settings: BalanceSettings | None = None,
    ) -> None:
        """Args:
        owns_redis: close `redis` on close().
        policy_source: where `policy` was read (the seed file), named in the logs.
        link: the RedisLink `redis` belongs to, started and closed with the engine (from_config).
        """
        self.live_policy = LivePolicy(VersionedPolicy(policy, FILE_VERSION, policy_source))
        """The policy decisions use: the file's until a live version is offered (policy_live.py)."""
        self._tracer = tracer
        self._tokenizer = tokenizer
        self._keyring = keyring
        self._instance = instance
        self._clock = clock
        self._redis_settings = redis_settings or RedisSettings()
        self._local_settings = local_settings or LocalSettings()
        journal_settings = journal_settings or JournalSettings()
        self._redis = redis
        self._owns_redis = owns_redis
        self._link = link
        self._gate = RedisGate(
            redis,
            self._redis_settings.command_deadline,
            max_concurrency=self._redis_settings.max_connections,
            durability=self._redis_settings.durability,
        )
        self._counters = RedisCounters(
            self._gate,
            window=policy.window,
            idempotency_ttl=journal_settings.idempotency_ttl,
            reversal_hold=journal_settings.reversal_hold,
        )
        self._stream = StreamJournal(
            self._gate,
            partitions=journal_settings.partitions,
            consumer_group=journal_settings.consumer_group,
            dedupe_ttl=journal_settings.dedupe_ttl,
        )
        self._local = SqliteJournal(sqlite_path, window=policy.window)
        self._budgets = ExposureBudgets(self._gate, lambda: self.live_policy.current.policy)
        self.balance_settings = balance_settings or BalanceSettings()
        self._balances = CardBalances(self._gate, self.balance_settings)
        self._recovery = self._recovery_task(keyring)
        stores = {"counters": self._counters, "stream": self._stream, "local": self._local}
        common = {"tokenizer": tokenizer, "keyring": keyring, "recovery": self._recovery}
        common["instance"] = instance
        risk = FleetRisk(VelocityWindows(self._gate), self._budgets)
        self._decider = Decider(
            live=self.live_policy, local_settings=self._local_settings, now_ms=self._now_ms, tracer=tracer,
            risk=risk, **stores, **common,  # type: ignore[arg-type]
        )  # fmt: skip
        self._reverser = Reverser(
            now_ms=self._now_ms, tracer=tracer, budgets=self._budgets, **stores, **common,  # type: ignore[arg-type]
        )  # fmt: skip
        self._state = _State.NEW
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def _recovery_task(self, keyring: PanKeyring) -> Recovery:
        mover = BacklogMover(
            self._local,
            self._counters,
            self._stream,
            keyring,
            batch=self._local_settings.migrate_batch,
            now_ms=self._now_ms,
            budgets=self._budgets,
        )
        return Recovery(
            self._gate,
            self._stream,
            self._local,
            mover,
            redis_settings=self._redis_settings,
            local_settings=self._local_settings,
        )

    @classmethod
    def from_config(
        cls,
        config: StandInConfig,
        *,
        redis: RedisClient | None = None,
        clock: Clock = time.time,
        tracer: Tracer | None = None,
        role: RedisRole = RedisRole.GATEWAY,
    ) -> StandIn:
        """Build from a loaded config; creates (and then owns) the Redis client unless one is given.

        The client it creates logs in as `role` (the gateway's `[redis]`; operator commands:
        `[redis.operator]`), over TLS unless the file says insecure; it reads the certificate
        and password files here: a bad one is a ConfigError.
        """
        link = None
        if redis is None:
            link = RedisLink(config.redis, role)
            redis = link.client
        return cls(
            redis=redis,
            policy=config.policy,
            tokenizer=CardTokenizer(config.token_key),
            keyring=config.pan_keyring(),
            sqlite_path=config.sqlite_path,
            instance=config.instance,
            clock=clock,
            redis_settings=config.redis,
            journal_settings=config.journal,
            local_settings=config.local,
            owns_redis=link is not None,
            tracer=tracer,
            link=link,
            policy_source=f"{config.file} [policy]",
            balance_settings=config.balance,
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the local journal, prepare the streams (if Redis answers) and start the background task."""
        if self._state is not _State.NEW:
            raise ClosedError(f"stand-in engine cannot start from state {self._state.value}")
        pending: set[str] = set()
        if self._link is not None:
            await self._link.start()
        try:
            await self._local.open()
            pending = await self._local.pending_tokens()
            self._check_local_keys(await self._local.pending_by_pan_key())
        except LocalJournalError:
            # Start anyway: with Redis up stand-in works; with Redis down it will answer 91.
            log.exception("local journal unavailable, stand-in relies on Redis alone")
        try:
            await self._stream.ensure_groups()
        except StoreUnavailableError as exc:
            self._recovery.mark_down(exc)  # start anyway: stand-in must work without Redis
        self._state = _State.RUNNING
        self._recovery.start(pending, name=f"standin-{self._instance}")

    def _check_local_keys(self, by_key: dict[str, int]) -> None:
        """Say at start when the local backlog needs a PAN key this process was not given."""
        for key_id, count in sorted(by_key.items()):
            if not self._keyring.knows(key_id):
                log.error(
                    "local journal %s: %d entries sealed with PAN key %s, which is not configured;"
                    " they reach the journal but settlement dead-letters them until the key is among"
                    " [keys] retired_pan_keys",
                    self._local.path, count, key_id,
                )  # fmt: skip

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
        if self._link is not None:
            await self._link.close()
        elif self._owns_redis:
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
        by_key = await self._local.pending_by_pan_key() if count else {}
        return EngineStatus(self._recovery.redis_up, count, oldest, by_key)

    async def exposure(self) -> list[BudgetExposure]:
        """Each exposure budget's approved amount in its period, fleet-wide (raises StoreUnavailableError)."""
        return await self._budgets.exposure()

    async def stream_backlog(self) -> StreamBacklog:
        """Unsettled entries of the Redis streams and the oldest's time (raises StoreUnavailableError)."""
        return await self._stream.backlog()

    async def unsettled(self) -> tuple[int, int]:
        """Decisions waiting for their advice: (this gateway's local backlog, entries in the fleet's
        Redis streams; 0 while Redis is away). Raises StoreUnavailableError, LocalJournalError."""
        local, _ = await self._local.backlog()
        return local, await self._stream.entries() if self._recovery.redis_up else 0

    async def recorded_for_other_content(self, request: StandInRequest, *, local: bool) -> bool:
        """Whether stand-in holds a decision of this (acquirer, request id) for other content: in
        Redis (the fleet's) and, with `local` or while Redis is away, this gateway's local journal.
        The issuer path asks it while decisions wait for their advice (gateway/reuse_check.py):
        before the advice, the issuer cannot refuse the reuse itself. Raises StoreUnavailableError,
        LocalJournalError."""
        async with self._running():
            key = self._decider.key_of(request)
            ids = (key.card_token, key.acquirer_id, key.request_id)
            recorded = None
            if self._recovery.redis_up:
                try:
                    recorded = await self._counters.digest_of(*ids)
                except StoreUnavailableError as exc:  # the next checks read locally until a probe
                    self._recovery.mark_down(exc)  # finds Redis again: one deadline, not one each
                    raise
            if recorded is None and (local or not self._recovery.redis_up):
                recorded = await self._local.recorded_digest(*ids)
            return recorded is not None and recorded != key.digest

    async def move_backlog(self) -> int:
        """Move the whole local backlog to Redis now; returns how many decisions were moved.

        Raises StoreUnavailableError or LocalJournalError (what was moved stays moved).
        """
        if self._state is not _State.RUNNING:
            raise ClosedError(f"stand-in engine is {self._state.value}")
        return await self._recovery.move_backlog()

    async def remember_balance(self, pan: str, available_minor: int, currency: str) -> None:
        """Keep the card's balance the issuer just reported (standin/balances.py).

        Raises ClosedError, and StoreUnavailableError when Redis cannot take it (it is then lost:
        the card keeps its previous balance until that expires, or the policy's limits).
        """
        async with self._running():
            await self._balances.remember(self._tokenizer.token(pan), available_minor, currency)

    # -- deciding and reversing -------------------------------------------------------------------

    async def decide(
        self,
        request: StandInRequest,
        reason: Reason,
        trace_context: str = "",
        *,
        maybe_reached_issuer: bool = False,
    ) -> StandInDecision:
        """Decide `request` in stand-in; the decision is durably journaled before it is returned.

        Args:
            reason: why the gateway asked stand-in.
            trace_context: W3C traceparent of the authorization, stored with the journal entry.
            maybe_reached_issuer: an attempt for this request may have reached an issuer (which may
                answer it late): a decision given again (a repeat) is journaled again with its new
                answered_at, so the issuer's book ends with it rather than its own late answer;
                a reused request id gets a declined advice of its content before it is refused.

        Raises ClosedError when the engine is not running, ReusedRequestIdError for a request id
        decided before for other content; every other failure becomes a 91 decline.
        """
        async with self._running():
            return await self._decider.decide(request, reason, trace_context, again=maybe_reached_issuer)

    async def decline(
        self, request: StandInRequest, reason: Reason, rule: str, trace_context: str = ""
    ) -> StandInDecision:
        """Record a 91 the gateway gives by itself after an attempt that may have reached an issuer
        (the request's earlier decision, if any, wins, and is journaled again as decide()'s
        maybe_reached_issuer says).

        Raises ClosedError and ReusedRequestIdError like decide().
        """
        forced = StaticDecline(rule, ResponseCode.ISSUER_UNAVAILABLE)
        async with self._running():
            return await self._decider.decide(request, reason, trace_context, forced=forced, again=True)

    async def advise(
        self,
        request: StandInRequest,
        kind: AcquirerAdviceKind,
        approval_code: str = "",
        trace_context: str = "",
    ) -> StandInDecision:
        """Record an acquirer advice (an approval already given) in the card's journal partition.

        It is approved and counted against the card's windows whatever the limits; settlement
        forwards it to the issuer (origin from its rule). A repeat is the recorded decision again.
        Raises ClosedError and ReusedRequestIdError; when nothing could record it the decision is a
        91 decline with journal NONE (the caller must not acknowledge it).
        """
        async with self._running():
            return await self._decider.advise(request, kind, approval_code, trace_context)

    async def reverse(
        self, reversal: StandInReversal, *, store: bool, trace_context: str = ""
    ) -> ReversalOutcome:
        """Apply or record a reversal (reversing.py).

        Raises ClosedError, and StoreUnavailableError when nothing can record it.
        """
        async with self._running():
            return await self._reverser.reverse(reversal, store=store, trace_context=trace_context)

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """Count one call in flight, so close() lets it finish."""
        if self._state is not _State.RUNNING:
            raise ClosedError(f"stand-in engine is {self._state.value}")
        self._inflight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
