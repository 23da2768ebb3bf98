"""An acquirer in front of the gateways: open-loop requests, and what a real one does around them.

The money invariant (DESIGN.md) is judged against what the acquirer holds: its
last answer for a request, reduced by its reversals, 0 for a decline, a
refusal, or no answer (then a timeout reversal). So the load generator must
behave like one, and record everything on the request's `chaos.samples.Sample`:

- every request carries its acquirer_id (the request factory's, e.g.
  `chaos.load.CardMix`), with request_ids unique per acquirer;
- UNAVAILABLE or RESOURCE_EXHAUSTED (a gateway gone or overloaded): the same
  request, same request_id, to the next gateway of the fleet, as long as the
  deadline allows;
- a refusal it understands (ALREADY_EXISTS, INVALID_ARGUMENT,
  PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION, OUT_OF_RANGE, or
  RESOURCE_EXHAUSTED from every gateway): nothing was done, nothing to reverse;
- anything else (DEADLINE_EXCEEDED, CANCELLED, UNAVAILABLE everywhere,
  INTERNAL...) is no answer: a timeout reversal (TERMINAL_TIMEOUT, final
  amount 0, its own reversal_id), delivered by `chaos.reversals` until
  acknowledged or the acquirer is closed (the end of the run's settle phase).

Optional behaviours (`AcquirerBehaviour`, off by default): repeats with the
same request_id and content, request_ids reused with other content (a
refusal expected; such a probe left unanswered gets its timeout reversal like
any request: it names its own amount as the original's, field 4 of a 0400, so
it reverses that content and never the original),
approvals reversed afterwards (full or partial), reversals sent before their
original, sends cancelled at a random point, per-request deadlines drawn from
a range, requests sent as acquirer advices (forced or offline approvals,
repeated until acknowledged; what the acquirer holds whatever the gateway
says: the money is spent). Every RPC error becomes an outcome on the sample: nothing is raised.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc
import grpc.aio

from authgw.v1 import authorization_pb2 as pb
from chaos.gateway_stubs import AcquirerStubs, Credentials, GatewayStubs
from chaos.request_key import content_digest
from chaos.reversals import ReversalSender, SentReversal
from chaos.samples import Outcome, Sample

__all__ = ["Acquirer", "AcquirerBehaviour"]

_REFUSALS = frozenset({
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})  # fmt: skip
_ELSEWHERE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_FOLLOW_UP_S = (0.02, 0.2)  # delay before a repeat, a reused id, a reversal or a late original
_ADVICE_ATTEMPTS = 50  # sends of one acquirer advice before the acquirer gives up (it never should)


@dataclass(frozen=True)
class AcquirerBehaviour:
    """What the acquirers do besides sending each request once; shares are of requests, 0..1."""

    repeat_share: float = 0.0
    """Requests sent again with the same request_id and content after their outcome."""
    reuse_share: float = 0.0
    """Request_ids reused afterwards with other content (amount + 1): ALREADY_EXISTS expected."""
    reverse_share: float = 0.0
    """Approvals reversed afterwards."""
    partial_share: float = 0.5
    """Of the reversals (afterwards or first), those that are partial (0 < final < amount)."""
    reverse_first_share: float = 0.0
    """Requests whose reversal is sent before them (the original follows, through another gateway)."""
    cancel_share: float = 0.0
    """Sends the client cancels at a random point before their deadline (a timeout reversal follows)."""
    deadline_range_s: tuple[float, float] | None = None
    """Each send's deadline drawn uniformly from this range; None: the run's deadline."""
    deadline_range_share: float = 1.0
    """Of the sends, those whose deadline is drawn from deadline_range_s (the others: the run's)."""
    reverse_elsewhere_share: float = 0.0
    """Of the reversals of approvals, those sent first to another gateway than the one that answered."""
    timeout_reversals: bool = True
    """Send a timeout reversal for a request left without an answer."""
    advice_share: float = 0.0
    """Requests sent as acquirer advices instead (Advise: half forced posts, half offline approvals),
    repeated until acknowledged."""
    seed: int = 11

    def __post_init__(self) -> None:
        shares = ("repeat_share", "reuse_share", "reverse_share", "partial_share", "reverse_first_share")
        for name in (
            *shares,
            "cancel_share",
            "deadline_range_share",
            "reverse_elsewhere_share",
            "advice_share",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AcquirerBehaviour.{name} must be within 0..1")
        low, high = self.deadline_range_s or (0.001, 0.001)
        if not 0 < low <= high:
            raise ValueError("AcquirerBehaviour.deadline_range_s must be (low, high) with 0 < low <= high")


class Acquirer:
    """Sends requests to a fleet of gateways and records what it holds; `async with` closes it."""

    def __init__(
        self,
        targets: Sequence[str],
        behaviour: AcquirerBehaviour | None = None,
        *,
        deadline_s: float = 2.0,
        credentials: Credentials | None = None,
        stubs: AcquirerStubs | None = None,
        balanced: bool = False,
        server_name: str | None = None,
    ) -> None:
        """Args:
        credentials: acquirer_id -> what that acquirer presents to the gateways (mutual TLS);
            None: plaintext.
        stubs: another transport to the same gateways (`chaos.acquirer_iso8583.IsoGatewayStubs`);
            None: gRPC to `targets` with `credentials`.
        balanced: one round_robin channel per acquirer over all targets (chaos.gateway_stubs),
            checking each gateway's certificate against `server_name`.
        """
        self._stubs: AcquirerStubs = (
            stubs
            if stubs is not None
            else GatewayStubs(targets, credentials, balanced=balanced, server_name=server_name)
        )
        self._behaviour = behaviour or AcquirerBehaviour()
        if stubs is not None and self._behaviour.cancel_share:
            raise ValueError("AcquirerBehaviour.cancel_share needs the gRPC transport (a call to cancel)")
        self._rng = random.Random(self._behaviour.seed)
        self._reversals = ReversalSender(self._stubs, self._rng)
        self._deadline_s = deadline_s
        self._prefix = uuid.uuid4().hex[:8]
        self._reversal_count = 0
        self._t0 = time.monotonic()
        self.samples: list[Sample] = []
        self.pan_of: dict[str, str] = {}  # "acquirer:request_id" -> PAN, never written to a report

    async def run(
        self,
        rate_per_s: float,
        duration_s: float,
        make_request: Callable[[], pb.AuthorizeRequest],
        on_tick: Callable[[float, list[Sample]], None] | None = None,
    ) -> list[Sample]:
        """Send make_request() at rate_per_s for duration_s, round robin; every sample once all are done.

        Reversals still unacknowledged keep being delivered until `close()`.
        """
        tasks: set[asyncio.Task[None]] = set()
        interval, total = 1.0 / rate_per_s, int(rate_per_s * duration_s)
        self._t0 = time.monotonic()
        next_tick = 1.0
        for i in range(total):
            delay = self._t0 + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            req = make_request()
            req.request_id = self._stubs.new_id(req.acquirer_id, req.request_id)
            sample = self._sample(req, target=i % len(self._stubs))
            task = asyncio.create_task(self._flow(req, sample))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if on_tick is not None and sample.sent_at >= next_tick:
                on_tick(sample.sent_at, self.samples)
                next_tick += 1.0
        if tasks:
            await asyncio.gather(*tasks)
        return self.samples

    @property
    def pending_reversals(self) -> int:
        """Reversals sent and not acknowledged yet (still being delivered)."""
        return self._reversals.pending

    def _sample(self, req: pb.AuthorizeRequest, *, target: int, reused: bool = False) -> Sample:
        sample = Sample(
            req.request_id, time.monotonic() - self._t0, amount_minor=req.amount_minor, target=target,
            acquirer_id=req.acquirer_id, digest=content_digest(req), reused=reused,
        )  # fmt: skip
        self.samples.append(sample)
        self.pan_of[f"{req.acquirer_id}:{req.request_id}"] = req.pan  # in memory only (confusion.py)
        return sample

    def _draw(self, share: float) -> bool:
        return share > 0.0 and self._rng.random() < share

    async def _pause(self) -> None:
        await asyncio.sleep(self._rng.uniform(*_FOLLOW_UP_S))

    async def _flow(self, req: pb.AuthorizeRequest, sample: Sample) -> None:
        """One request's life: (reversal first), the original, (repeat), (reused id), (reversal)."""
        b, target = self._behaviour, sample.target
        if self._draw(b.advice_share):
            await self._advise(req, sample, target)
            if sample.approved and self._draw(b.reverse_share):
                await self._pause()
                self._reverse(req, sample, self._final_amount(req), pb.CARDHOLDER_CANCEL, target)
            return
        if self._draw(b.reverse_first_share):
            self._reverse(req, sample, self._final_amount(req), pb.CARDHOLDER_CANCEL, target, first=True)
            await self._pause()
            target += 1  # the original may well reach another gateway than its reversal
        await self._send(req, sample, target, first=True)
        if self._draw(b.repeat_share):
            await self._pause()
            await self._send(req, sample, target + 1)
        if self._draw(b.reuse_share):
            await self._pause()
            other = pb.AuthorizeRequest()
            other.CopyFrom(req)
            other.amount_minor += 1
            await self._send(
                other, self._sample(other, target=target + 1, reused=True), target + 1, first=True
            )
        if sample.last_outcome == Outcome.ANSWERED and sample.approved and self._draw(b.reverse_share):
            await self._pause()
            via = sample.target + 1 if self._draw(b.reverse_elsewhere_share) else sample.target
            self._reverse(req, sample, self._final_amount(req), pb.CARDHOLDER_CANCEL, via)

    def _final_amount(self, req: pb.AuthorizeRequest) -> int:
        partial = req.amount_minor > 1 and self._draw(self._behaviour.partial_share)
        return self._rng.randrange(1, req.amount_minor) if partial else 0

    def _reverse(
        self,
        req: pb.AuthorizeRequest,
        sample: Sample,
        final: int,
        reason: int,
        target: int,
        *,
        first: bool = False,
    ) -> None:
        self._reversal_count += 1
        record = SentReversal(
            self._stubs.new_id(req.acquirer_id, f"{self._prefix}-r{self._reversal_count}"),
            final,
            pb.ReversalReason.Name(reason),
            first,
            gateway=target % len(self._stubs),
        )
        sample.reversals.append(record)
        request = pb.ReverseRequest(
            acquirer_id=req.acquirer_id, reversal_id=record.reversal_id, original_request_id=req.request_id,
            pan=req.pan, final_amount_minor=final, reason=reason, currency=req.currency,  # type: ignore[arg-type]
            original_amount_minor=req.amount_minor,
        )  # fmt: skip
        self._reversals.submit(request, record, target)

    async def _send(
        self, req: pb.AuthorizeRequest, sample: Sample, target: int, *, first: bool = False
    ) -> None:
        """Send once (moving on to other gateways as allowed) and record the outcome on `sample`."""
        b = self._behaviour
        deadline_s = self._deadline_s
        if b.deadline_range_s and (b.deadline_range_share >= 1.0 or self._draw(b.deadline_range_share)):
            deadline_s = self._rng.uniform(*b.deadline_range_s)
        cancel_after_s = self._rng.uniform(0.0, deadline_s) if self._draw(b.cancel_share) else None
        req.transmitted_at.FromNanoseconds(time.time_ns())
        started = time.monotonic()
        response, code, index = await self._attempts(req, target, deadline_s, cancel_after_s)
        sample.sends += 1
        if first:
            sample.status, sample.target, sample.deadline_s = code, index, deadline_s
            if response is not None:
                sample.latency_s = time.monotonic() - started
        if response is not None:
            sample.record_answer(response, time.monotonic() - self._t0)
        elif grpc.StatusCode[code] in _REFUSALS:
            sample.refusals.append(code)
            sample.last_outcome = Outcome.REFUSED
        else:
            sample.last_outcome = Outcome.NO_ANSWER
            sample.cancelled = sample.cancelled or (cancel_after_s is not None and code == "CANCELLED")
            already = any(r.final_amount_minor == 0 for r in sample.reversals)
            if b.timeout_reversals and not already:
                self._reverse(req, sample, 0, pb.TERMINAL_TIMEOUT, index)

    async def _advise(self, req: pb.AuthorizeRequest, sample: Sample, target: int) -> None:
        """The request as an acquirer advice, sent (same content) until a gateway acknowledges it."""
        kind = pb.FORCED_POST if self._rng.random() < 0.5 else pb.OFFLINE_APPROVED
        sample.advice = pb.AcquirerAdviceKind.Name(kind)
        advice = pb.AcquirerAdvice(request=req, kind=kind, approval_code="V00001")
        code = grpc.StatusCode.UNAVAILABLE
        for attempt in range(_ADVICE_ATTEMPTS):
            index = (target + attempt) % len(self._stubs)
            advice.request.transmitted_at.FromNanoseconds(time.time_ns())
            started = time.monotonic()
            sample.sends += 1
            try:
                ack = await self._stubs.of(req.acquirer_id)[index].Advise(advice, timeout=self._deadline_s)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in _REFUSALS and code not in _ELSEWHERE:
                    break  # the money is spent all the same: the oracle will find it missing
                await self._pause()
                continue
            sample.status, sample.target, sample.latency_s = "OK", index, time.monotonic() - started
            sample.record_advice(ack, time.monotonic() - self._t0)
            return
        sample.status = code.name
        sample.last_outcome = Outcome.REFUSED if code in _REFUSALS else Outcome.NO_ANSWER

    async def _attempts(
        self, req: pb.AuthorizeRequest, first: int, deadline_s: float, cancel_after_s: float | None
    ) -> tuple[pb.AuthorizeResponse | None, str, int]:
        """(answer or None, gRPC status name, gateway index) of one send across the fleet."""
        started = time.monotonic()
        code, index = grpc.StatusCode.UNAVAILABLE, first % len(self._stubs)
        for i in range(len(self._stubs)):
            index = (first + i) % len(self._stubs)
            left = deadline_s - (time.monotonic() - started)
            if left <= 0:
                return None, grpc.StatusCode.DEADLINE_EXCEEDED.name, index
            call = self._stubs.of(req.acquirer_id)[index].Authorize(req, timeout=left)
            if cancel_after_s is not None and await _cancelled_at(
                call, cancel_after_s - (time.monotonic() - started)
            ):
                return None, grpc.StatusCode.CANCELLED.name, index
            try:
                response: pb.AuthorizeResponse = await call
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in _ELSEWHERE:
                    continue  # not taken by that gateway: the same request_id to the next one
                return None, code.name, index
            return response, "OK", index
        return None, code.name, index

    async def close(self) -> None:
        """Stop delivering reversals (the settle phase is over) and close the channels; safe twice."""
        await self._reversals.close()
        await self._stubs.close()

    async def __aenter__(self) -> Acquirer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _cancelled_at(
    call: grpc.aio.UnaryUnaryCall[pb.AuthorizeRequest, pb.AuthorizeResponse], after_s: float
) -> bool:
    """Let `call` run for after_s, then cancel it as a client giving up; True when it was cancelled."""
    finished = asyncio.ensure_future(call.code())  # completes with the call, whatever its status
    try:
        await asyncio.wait({finished}, timeout=max(0.0, after_s))
    finally:
        gave_up = not finished.done()
        if gave_up:
            call.cancel()
            await asyncio.wait({finished})  # the cancelled call ends at once
    return gave_up
