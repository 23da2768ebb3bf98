"""The settlement worker: replay stand-in decisions to the issuer, exactly once in effect, nothing lost.

One worker runs inside each gateway (and `authgw settle` runs one alone). It reads
the journal's partition streams through the consumer group, sends each entry as an
advice through the injected `AdviceSender` once `issuer_healthy()` says a pool is
back, and acknowledges (XACK, then deletes) an entry only after the issuer
acknowledged the advice. The issuer deduplicates by decision_id, so every
"at least once" path below (a worker dying after the issuer's ack but before its
own, a lease changing hands) is "exactly once" in effect.

How order, fair sharing and failures work: see the package docstring (__init__.py).

Local SQLite journal entries reach the stream through the stand-in engine's backlog
mover (migrate.py) and are settled like any other; the worker's heartbeat carries the
local backlog (`authgw standin status`) so nothing stays stranded unseen.

Tracing: one `authgw.settlement.advise` span per send, linked (span link) to the
original authorization through the journal's traceparent.

Lifecycle: `start()` returns at once (Redis may be down); `close()` stops reading,
lets in-flight advices finish and be recorded within `advise_timeout`, releases the
leases; safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType

from opentelemetry import trace
from opentelemetry.metrics import Counter
from opentelemetry.trace import Tracer

from authgw.tasks import stop_then_cancel
from standin.counters import UnadvisedCounter
from standin.crypto import PanKeyring
from standin.entry import given_again
from standin.errors import ClosedError, StandInError
from standin.journal import StreamJournal
from standin.redis_config import RedisRole
from standin.redis_durable import RedisClient
from standin.redis_io import RedisGate
from standin.redis_link import RedisLink
from standin.settings import JournalSettings, StandInConfig
from standin.settlement.advice import AdviceSender, BacklogSource, IssuerHealth
from standin.settlement.dispatch import BatchResult, Dispatcher, settled_record, sleep_unless
from standin.settlement.lease import PartitionLeases
from standin.settlement.pacing import Pacer, Pause
from standin.settlement.partitions import PartitionOwner
from standin.settlement.settings import SettlementSettings
from standin.settlement.store import LeaseLostError, RawEntry, SettleStore
from standin.tokens import token_key_id

__all__ = ["Settlement", "WorkerState"]

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.1
_STALE_HEARTBEATS = 30  # heartbeat intervals after which a silent worker's heartbeat is dropped


class WorkerState(enum.Enum):
    NEW = "new"
    IDLE = "idle"  # nothing to send, or no partition held
    SETTLING = "settling"
    PAUSED = "paused"  # issuer unhealthy or not answering
    CLOSED = "closed"


class Settlement:
    """A settlement worker. Use `async with Settlement(...)` or start() / close().

    Args:
        issuer_healthy: True when some issuer pool is healthy (checked before every send).
        instance: the gateway (or `authgw settle`) this worker belongs to, in counters and status.
        advice_counter: an OpenTelemetry counter given one add per advice, by outcome.
        backlog: the gateway's stand-in engine, whose local backlog the heartbeat reports.
        token_key_id: the card-token key's id (tokens.py), shown in status so an operator sees
            when every gateway runs a new key.
    """

    def __init__(
        self,
        *,
        redis: RedisClient,
        keyring: PanKeyring,
        sender: AdviceSender,
        issuer_healthy: IssuerHealth,
        instance: str,
        journal: JournalSettings | None = None,
        settings: SettlementSettings | None = None,
        tracer: Tracer | None = None,
        advice_counter: Counter | None = None,
        backlog: BacklogSource | None = None,
        owns_redis: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        token_key_id: str = "",
        link: RedisLink | None = None,
    ) -> None:
        self.instance = instance
        self._token_key_id = token_key_id
        self.worker_id = f"{instance}:{uuid.uuid4().hex[:8]}"
        self.settings = settings or SettlementSettings()
        self._journal = journal or JournalSettings()
        self._redis = redis
        self._owns_redis = owns_redis
        self._link = link  # started and closed with the worker (from_config)
        self._issuer_healthy = issuer_healthy
        self._backlog = backlog
        self._clock = clock
        self._wall_clock = wall_clock
        # One slot per partition it may hold (each may wait in a blocking read), and room for the rest.
        gate = RedisGate(redis, self.settings.redis_deadline, max_concurrency=self._journal.partitions + 8)
        self._streams = StreamJournal(
            gate,
            partitions=self._journal.partitions,
            consumer_group=self._journal.consumer_group,
            dedupe_ttl=self._journal.dedupe_ttl,
        )
        self._store = SettleStore(
            gate,
            group=self._journal.consumer_group,
            worker_id=self.worker_id,
            settler=instance,
            retention=self.settings.settled_retention,
        )
        self._unadvised = UnadvisedCounter(gate)
        self._owner = self._partition_owner(gate)
        self.pacer = Pacer(self.settings, clock)
        self.pause = Pause(self.settings, clock)
        self._keyring = keyring
        self._dispatcher = Dispatcher(
            sender=sender, keyring=keyring, settings=self.settings, pacer=self.pacer, pause=self.pause,
            tracer=tracer or trace.NoOpTracer(), counter=advice_counter, clock=clock,
        )  # fmt: skip
        self.stats = self._dispatcher.stats
        """What this worker did since it started (sent, acked, duplicates, rejected, failed, ...)."""
        self.state = WorkerState.NEW
        self._stopping = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._busy: set[int] = set()
        self._redis_down = False

    def _partition_owner(self, gate: RedisGate) -> PartitionOwner:
        return PartitionOwner(
            leases=PartitionLeases(gate, self.worker_id, self.settings.lease_ttl, self._clock),
            store=self._store,
            partitions=self._journal.partitions,
            heartbeat=self.settings.heartbeat,
            grace=self.settings.advise_timeout + self.settings.redis_deadline,
            settle=self._settle_partition,
            wall_clock=self._wall_clock,
        )

    @classmethod
    def from_config(
        cls,
        config: StandInConfig,
        settings: SettlementSettings,
        *,
        sender: AdviceSender,
        issuer_healthy: IssuerHealth,
        instance: str | None = None,
        tracer: Tracer | None = None,
        advice_counter: Counter | None = None,
        backlog: BacklogSource | None = None,
    ) -> Settlement:
        """A worker with its own Redis client (settlement's deadlines, not the decision path's).

        It logs in as `[redis.settle]` when the file has one (in a gateway and in `authgw settle`
        alike), else as the gateway; a bad certificate or password file is a ConfigError.
        """
        deadline = settings.redis_deadline
        redis_settings = dataclasses.replace(
            config.redis,
            socket_timeout=deadline,
            connect_timeout=min(deadline, timedelta(seconds=1)),
            command_deadline=deadline,
        )
        link = RedisLink(redis_settings, RedisRole.SETTLE)
        return cls(
            redis=link.client,
            keyring=config.pan_keyring(),
            sender=sender,
            issuer_healthy=issuer_healthy,
            instance=instance or config.instance,
            journal=config.journal,
            settings=settings,
            tracer=tracer,
            advice_counter=advice_counter,
            backlog=backlog,
            owns_redis=True,
            token_key_id=token_key_id(config.token_key),
            link=link,
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start settling in the background (returns at once, even with Redis down)."""
        if self.state is not WorkerState.NEW:
            raise ClosedError(f"settlement worker cannot start from state {self.state.value}")
        self.state = WorkerState.IDLE
        if self._link is not None:
            await self._link.start()
        self._main = asyncio.create_task(self._run(), name=f"settlement-{self.worker_id}")
        log.info("settlement worker %s started", self.worker_id)

    async def close(self) -> None:
        """Stop reading, let in-flight advices finish and be recorded, release the leases. Safe twice."""
        if self._stopping.is_set():
            await self._closed.wait()
            return
        self._stopping.set()
        grace = self.settings.advise_timeout + self.settings.redis_deadline + timedelta(seconds=1)
        await stop_then_cancel(self._main, self._stopping, grace.total_seconds())
        with contextlib.suppress(StandInError):
            await self._owner.release_all()
        with contextlib.suppress(StandInError):
            await self._store.forget_workers([self.worker_id])
        if self._link is not None:
            await self._link.close()
        elif self._owns_redis:
            await self._redis.aclose()
        self.state = WorkerState.CLOSED
        self._closed.set()
        log.info("settlement worker %s stopped", self.worker_id)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> Settlement:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def held_partitions(self) -> list[int]:
        return self._owner.held()

    # -- the loops ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Lease and heartbeat loop; one task per partition held."""
        interval_s = self.settings.lease_ttl.total_seconds() / 4
        heartbeat_s = self.settings.heartbeat.total_seconds()
        next_heartbeat = 0.0
        groups_ready = False
        try:
            while not self._stopping.is_set():
                try:
                    if not groups_ready:
                        await self._streams.ensure_groups()
                        groups_ready = True
                    if self._clock() >= next_heartbeat:
                        await self._heartbeat()
                        next_heartbeat = self._clock() + heartbeat_s
                    await self._owner.maintain()
                    self._redis_up()
                except StandInError as exc:
                    self._redis_failed(exc)
                except Exception:  # a bug must not stop settlement for good: log it, go on
                    log.exception("settlement lease loop failed; retrying")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(interval_s, heartbeat_s)):
                        await self._stopping.wait()
        finally:
            await self._owner.stop_all()

    async def _heartbeat(self) -> None:
        local: dict[str, object] = {}
        if self._backlog is not None:
            try:
                status = await self._backlog.status()
                local = {
                    "local_backlog": status.local_backlog,
                    "oldest_local_ms": status.oldest_local_ms,
                    "local_by_pan_key": status.local_by_pan_key,
                }
            except StandInError as exc:
                local = {"local_backlog_error": str(exc)}
        await self._store.heartbeat(
            {
                "instance": self.instance,
                "pid": os.getpid(),
                "state": self.state.value,
                "issuer_healthy": self._issuer_says_healthy(),
                "paused_s": round(self.pause.remaining().total_seconds(), 1),
                "partitions": self._owner.held(),
                "rate_per_s": round(self.pacer.rate, 1),
                "in_flight": self._dispatcher.in_flight,
                "updated_ms": int(self._wall_clock() * 1000),
                "token_key_id": self._token_key_id,
                "pan_key_id": self._keyring.key_id,
                "retired_pan_keys": list(self._keyring.retired_ids),
                **dataclasses.asdict(self.stats),
                **local,
            }
        )
        silent_ms = _STALE_HEARTBEATS * self.settings.heartbeat.total_seconds() * 1000
        await self._store.forget_silent_workers(self._wall_clock() * 1000, silent_ms)

    def _redis_failed(self, exc: StandInError) -> None:
        if not self._redis_down:
            self._redis_down = True
            log.warning("settlement cannot reach Redis, retrying: %s", exc)

    def _redis_up(self) -> None:
        if self._redis_down:
            self._redis_down = False
            log.info("settlement reaches Redis again")

    # -- one partition ------------------------------------------------------------------------------

    async def _settle_partition(self, partition: int, stop: asyncio.Event) -> None:
        try:
            await self._settle_until_stopped(partition, stop)
        finally:
            self._busy.discard(partition)

    async def _settle_until_stopped(self, partition: int, stop: asyncio.Event) -> None:
        backoff_s = 0.1
        while not stop.is_set() and not self._stopping.is_set():
            try:
                if not await self._wait_until_sendable(partition, stop):
                    continue
                entries = await self._store.claim_pending(partition, self.settings.batch)
                if not entries:
                    block_ms = int(self.settings.block / timedelta(milliseconds=1))
                    entries = await self._store.read_new(partition, self.settings.batch, block_ms)
                if entries:
                    self._busy.add(partition)
                    self._update_state()
                    await self._settle_batch(partition, entries, stop)
                else:
                    self._busy.discard(partition)
                    self._update_state()
                backoff_s = 0.1
            except asyncio.CancelledError:
                raise
            except LeaseLostError as exc:
                log.warning("%s", exc)
                return
            except StandInError as exc:
                self._redis_failed(exc)
                await sleep_unless(backoff_s, stop)
                backoff_s = min(backoff_s * 2, 2.0)
            except Exception:
                log.exception("settlement of partition %d failed; retrying", partition)
                await sleep_unless(backoff_s, stop)
                backoff_s = min(backoff_s * 2, 2.0)

    async def _wait_until_sendable(self, partition: int, stop: asyncio.Event) -> bool:
        """Wait while the issuer is unhealthy or settlement is paused; False if stopped meanwhile."""
        while not (stop.is_set() or self._stopping.is_set()):
            if self._healthy() and self._owner.valid_for(partition, self._send_margin_s()):
                return True
            self._update_state()
            await sleep_unless(_IDLE_POLL_S, stop)
        return False

    async def _settle_batch(self, partition: int, entries: list[RawEntry], stop: asyncio.Event) -> None:
        batch = BatchResult()
        advices = self._dispatcher.decode(partition, entries, batch)
        now_ms = int(self._wall_clock() * 1000)
        # a decision given again carries a later answered_at the issuer has not seen: sent even if settled
        again = {e.stream_id for e in entries if given_again(e.fields)}
        ids = [a.decision_id for a in advices if a.stream_id not in again]
        known = await self._store.settled_ids(partition, ids, now_ms)
        already = [a for a in advices if a.decision_id in known and a.stream_id not in again]
        batch.settled += [settled_record(a, "already") for a in already]
        await self._dispatcher.run(
            [a for a in advices if a.decision_id not in known or a.stream_id in again],
            {entry.stream_id: entry.fields for entry in entries},
            batch,
            may_send=lambda: self._may_send(partition, stop),
            stop=stop,
        )
        now_ms = int(self._wall_clock() * 1000)
        self.stats.dead_letters += await self._store.dead_letter(partition, batch.dead, now_ms)
        await self._store.settle(partition, batch.settled, now_ms)
        # The issuer has them (or they are out of the way): the cards' later reversals need not wait.
        tokens = [s.card_token for s in batch.settled if s.how != "already"]
        tokens += [d.fields.get("card_token", "") for d in batch.dead]
        # best effort: a count left too high only makes the card's reversals queue (the safe side)
        await asyncio.gather(*(self._unadvised.done(t) for t in tokens if t), return_exceptions=True)
        self.stats.count_settled(s.outcome for s in batch.settled if s.how != "already")

    # -- conditions -----------------------------------------------------------------------------------

    def _send_margin_s(self) -> float:
        return self.settings.advise_timeout.total_seconds() + 0.1

    def _issuer_says_healthy(self) -> bool:
        try:
            return self._issuer_healthy()
        except Exception:
            log.exception("issuer_healthy() failed; treating the issuer as unhealthy")
            return False

    def _healthy(self) -> bool:
        return self._issuer_says_healthy() and not self.pause.active()

    def _may_send(self, partition: int, stop: asyncio.Event) -> bool:
        return (
            not stop.is_set()
            and not self._stopping.is_set()
            and self._healthy()
            and self._owner.valid_for(partition, self._send_margin_s())
        )

    def _update_state(self) -> None:
        if self.state is WorkerState.CLOSED:
            return
        if not self._healthy():
            self.state = WorkerState.PAUSED
        elif self._busy:
            self.state = WorkerState.SETTLING
        else:
            self.state = WorkerState.IDLE
