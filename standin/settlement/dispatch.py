"""Sending one batch of a partition: each card's advices in order, cards concurrently, paced and traced.

    decode     journal entries -> Advices (PAN decrypted); an entry that cannot be decoded
               becomes a dead letter at once
    run        one task per card: its advices strictly one after the other (by decision time),
               at most `max_in_flight` sends in all, each behind the pacer; returns what the
               issuer has (to acknowledge) and what to dead-letter. A card whose advice gets
               no answer stops there: that advice and the card's later ones stay pending.

Per advice: ACKED / DUPLICATE -> settled; POISON -> dead letter; REJECTED -> retried after
retry_backoff (doubling) up to max_attempts, then dead letter; FAILED -> retried a couple of
times, then left pending (the breaker in settle_pacing.py pauses settlement when it repeats).
After a pause, sends go one at a time (a trial) until one is answered.

Each send runs in an `authgw.settlement.advise` client span linked to the authorization's
trace (the journal's traceparent); its attributes carry decision id, partition, outcome and
the issuer host, never the PAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import Counter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from authgw.observability import link_from_traceparent
from standin.crypto import PanKeyring
from standin.entry import REVERSAL, decode_entry, decode_reversal, entry_kind
from standin.errors import EntryFormatError
from standin.settlement.advice import (
    Advice,
    AdviceSender,
    JournalItem,
    ReversalAdvice,
    SendOutcome,
    SendResult,
)
from standin.settlement.pacing import Pacer, Pause
from standin.settlement.settings import SettlementSettings
from standin.settlement.store import DeadLetter, RawEntry, Settled

__all__ = ["ADVISE_SPAN", "BatchResult", "Dispatcher", "WorkerStats", "settled_record", "sleep_unless"]

log = logging.getLogger(__name__)

ADVISE_SPAN = "authgw.settlement.advise"
_TRANSIENT_RETRIES = 3  # sends of one advice without an answer before its card waits for the next round

MaySend = Callable[[], bool]
"""Checked before every send: not stopping, issuer healthy, lease held for the whole deadline."""


@dataclasses.dataclass(slots=True)
class WorkerStats:
    """What one worker did since it started."""

    sent: int = 0
    acked: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    dead_letters: int = 0
    settled_approved: int = 0
    settled_declined: int = 0
    settled_reversals: int = 0

    def count_settled(self, outcomes: Iterable[str]) -> None:
        """Entries newly settled, by outcome (approved, declined, reversed)."""
        for outcome in outcomes:
            if outcome == "approved":
                self.settled_approved += 1
            elif outcome == "declined":
                self.settled_declined += 1
            else:
                self.settled_reversals += 1


@dataclasses.dataclass(slots=True)
class BatchResult:
    """What to record once a batch is done."""

    settled: list[Settled] = dataclasses.field(default_factory=list)
    dead: list[DeadLetter] = dataclasses.field(default_factory=list)


def settled_record(item: JournalItem, how: str) -> Settled:
    """The settled record of `item` (how: acked, duplicate, already)."""
    if isinstance(item, ReversalAdvice):
        r = item.reversal
        return Settled(
            item.stream_id, item.decision_id, "reversed", r.final_amount_minor, r.currency,
            item.gateway_instance, how, item.card_token, f"{r.acquirer_id}:{r.original_request_id}",
        )  # fmt: skip
    return Settled(
        item.stream_id,
        item.decision_id,
        "approved" if item.decision.approved else "declined",
        item.request.amount_minor,
        item.request.currency,
        item.decision.gateway_instance,
        how,
        item.card_token,
        f"{item.request.acquirer_id}:{item.request.request_id}",
    )


async def sleep_unless(seconds: float, stop: asyncio.Event) -> bool:
    """Sleep, waking early when `stop` is set; True when not stopped."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return not stop.is_set()


class Dispatcher:
    """Sends the advices of a worker's batches (shared by its partitions: one pace, one in-flight cap)."""

    def __init__(
        self,
        *,
        sender: AdviceSender,
        keyring: PanKeyring,
        settings: SettlementSettings,
        pacer: Pacer,
        pause: Pause,
        tracer: Tracer,
        counter: Counter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sender = sender
        self._keyring = keyring
        self._settings = settings
        self._pacer = pacer
        self._pause = pause
        self._tracer = tracer
        self._counter = counter
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._trial = asyncio.Lock()
        self.in_flight = 0
        self.stats = WorkerStats()

    def decode(self, partition: int, entries: list[RawEntry], into: BatchResult) -> list[JournalItem]:
        """The entries as advices and reversals; an undecodable one goes to `into.dead` at once."""
        items: list[JournalItem] = []
        for entry in entries:
            try:
                items.append(self._decode(partition, entry))
            except EntryFormatError as exc:
                # TRY400 ignored: the cause is in the message, a traceback adds nothing
                log.error("entry %s cannot be decoded: dead letter (%s)", entry.stream_id, exc)  # noqa: TRY400
                into.dead.append(DeadLetter(entry.stream_id, entry.fields, f"undecodable: {exc}", 0))
        return items

    def _decode(self, partition: int, entry: RawEntry) -> JournalItem:
        if entry_kind(entry.fields) == REVERSAL:
            r = decode_reversal(entry.fields, self._keyring)
            return ReversalAdvice(
                r.reversal, r.entry_id, r.card_token, r.trace_context, partition, entry.stream_id,
                r.decided_at, r.gateway_instance,
            )  # fmt: skip
        d = decode_entry(entry.fields, self._keyring)
        return Advice(d.request, d.decision, d.card_token, d.trace_context, partition, entry.stream_id)

    async def run(
        self,
        advices: list[JournalItem],
        fields: dict[str, dict[str, str]],
        into: BatchResult,
        *,
        may_send: MaySend,
        stop: asyncio.Event,
    ) -> None:
        """Send `advices` (one task per card); add what is settled or dead to `into`.

        Args:
            fields: the journal fields by stream id (a dead letter keeps them all).
        """
        cards: dict[str, list[JournalItem]] = {}
        for advice in advices:
            cards.setdefault(advice.card_token, []).append(advice)
        async with asyncio.TaskGroup() as tg:
            for chain in cards.values():
                chain.sort(key=lambda a: a.order_at)  # stable: stream order on ties
                tg.create_task(self._card(chain, fields, into, may_send, stop))
        if self._counter is not None and into.dead:
            self._counter.add(len(into.dead), {"outcome": "dead_letter"})

    async def _card(
        self,
        chain: list[JournalItem],
        fields: dict[str, dict[str, str]],
        into: BatchResult,
        may_send: MaySend,
        stop: asyncio.Event,
    ) -> None:
        """One card's advices of this batch, strictly one after the other."""
        for advice in chain:
            verdict = await self._advise(advice, may_send, stop)
            if verdict is None:
                return  # left pending, with the card's later advices behind it
            if isinstance(verdict, Settled):
                into.settled.append(verdict)
            else:
                error, attempts = verdict
                into.dead.append(DeadLetter(advice.stream_id, fields[advice.stream_id], error, attempts))

    async def _advise(
        self, advice: JournalItem, may_send: MaySend, stop: asyncio.Event
    ) -> Settled | tuple[str, int] | None:
        """Send until settled (Settled), given up on ((error, attempts): a dead letter) or left pending."""
        rejections = failures = 0
        while True:
            result = await self._send(advice, may_send)
            if result is None:
                return None
            outcome = result.outcome
            if outcome.settled:
                return settled_record(advice, outcome.value)
            if outcome is SendOutcome.POISON:
                log.error(
                    "advice %s refused as malformed: dead letter (%s)", advice.decision_id, result.detail
                )
                return f"poison: {result.detail}", rejections + 1
            if outcome is SendOutcome.REJECTED:
                rejections += 1
                if rejections >= self._settings.max_attempts:
                    log.error(
                        "issuer rejected advice %s %d times: dead letter (%s)",
                        advice.decision_id,
                        rejections,
                        result.detail,
                    )
                    return f"rejected: {result.detail}", rejections
                delay_s = self._settings.retry_backoff.total_seconds() * 2 ** (rejections - 1)
            else:
                failures += 1
                if failures >= _TRANSIENT_RETRIES:
                    return None
                delay_s = 0.05 * 2**failures
            if not await sleep_unless(delay_s, stop):
                return None

    async def _send(self, advice: JournalItem, may_send: MaySend) -> SendResult | None:
        """One send, paced and traced; None when it must not happen now."""
        async with self._slots:
            if self._pause.tripped:
                async with self._trial:  # after a pause: one trial advice at a time until one is answered
                    return await self._send_now(advice, may_send)
            return await self._send_now(advice, may_send)

    async def _send_now(self, advice: JournalItem, may_send: MaySend) -> SendResult | None:
        if not may_send():
            return None
        await self._pacer.acquire()
        if not may_send():
            return None
        self.in_flight += 1
        started = self._clock()
        try:
            result = await self._traced_send(advice)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sender bug for this advice: keep the advice, out of the way
            log.exception("advice sender raised for advice %s", advice.decision_id)
            result = SendResult(SendOutcome.POISON, f"sender raised {type(exc).__name__}: {exc}")
        finally:
            self.in_flight -= 1
        answered = result.outcome.answered
        self._pacer.record(self._clock() - started, answered)
        if answered:
            self._pause.answered()
        else:
            self._pause.failed()
        self._count(result.outcome)
        return result

    async def _traced_send(self, advice: JournalItem) -> SendResult:
        link = link_from_traceparent(advice.trace_context)
        with self._tracer.start_as_current_span(
            ADVISE_SPAN,
            kind=SpanKind.CLIENT,
            links=[link] if link is not None else None,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            deadline = self._settings.advise_timeout
            if isinstance(advice, ReversalAdvice):
                result = await self._sender.reverse(advice, deadline=deadline)
            else:
                result = await self._sender.send(advice, deadline=deadline)
            if span.is_recording():
                attrs: dict[str, Any] = {
                    "authgw.settlement.decision_id": advice.decision_id,
                    "authgw.settlement.partition": advice.partition,
                    "authgw.settlement.outcome": result.outcome.value,
                }
                if isinstance(advice, Advice):
                    attrs["authgw.settlement.approved"] = advice.decision.approved
                    attrs["authgw.settlement.gateway_instance"] = advice.decision.gateway_instance
                else:
                    attrs["authgw.settlement.kind"] = "reversal"
                if result.target:
                    attrs["authgw.settlement.target"] = result.target
                span.set_attributes(attrs)
                if not result.outcome.settled:
                    span.set_status(Status(StatusCode.ERROR, f"{result.outcome.value}: {result.detail}"))
            return result

    def _count(self, outcome: SendOutcome) -> None:
        s = self.stats
        s.sent += 1
        if outcome is SendOutcome.ACKED:
            s.acked += 1
        elif outcome is SendOutcome.DUPLICATE:
            s.duplicates += 1
        elif outcome is SendOutcome.FAILED:
            s.failed += 1
        else:
            s.rejected += 1
        if self._counter is not None:
            self._counter.add(1, {"outcome": outcome.value})
