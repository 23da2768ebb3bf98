"""One attempt of a request on one member, and the record of answers that came too late.

An attempt that times out is not cancelled at once: the call keeps running for
a late-answer window so that, if the issuer answers after all, the answer is
recorded for reconciliation (it is never delivered as a second answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from authgw.codes import ResponseCode
from authgw.v1 import authorization_pb2 as pb
from gateway.member import Member

__all__ = [
    "AUTHORIZE",
    "REVERSE",
    "Attempt",
    "AttemptKind",
    "LateAnswer",
    "LateAnswers",
    "Method",
    "run_attempt",
]

log = logging.getLogger("authgw.attempt")

SYSTEM_DECLINE_CODES = frozenset(
    {ResponseCode.ISSUER_UNAVAILABLE.value, ResponseCode.SYSTEM_MALFUNCTION.value}
)


class AttemptKind(enum.Enum):
    """Machine-readable outcome of an attempt (for routing, traces and metrics)."""

    ANSWERED = "answered"  # the issuer decided (approved or a business decline)
    REFUSED = "refused"  # the issuer refused the request for good (ALREADY_EXISTS: a reused request id)
    SYSTEM_DECLINE = "system_decline"  # the issuer answered 91/96: it could not decide
    NOT_SENT = "not_sent"  # connection refused before the request left: safe anywhere
    UNAVAILABLE = "unavailable"  # connection broke, outcome unknown
    TIMEOUT = "timeout"  # no answer within the attempt timeout, outcome unknown
    ERROR = "error"  # any other RPC error from the host

    @property
    def failed(self) -> bool:
        return self is not AttemptKind.ANSWERED and self is not AttemptKind.REFUSED

    @property
    def maybe_reached_issuer(self) -> bool:
        """The issuer may have processed the request (its outcome is then unknown to the gateway)."""
        return self in (AttemptKind.UNAVAILABLE, AttemptKind.TIMEOUT, AttemptKind.ERROR)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened on one member."""

    pool: str
    member: str
    kind: AttemptKind
    elapsed_s: float
    detail: str = ""
    response: Any = None  # the issuer's answer (AuthorizeResponse or ReverseResponse) when it answered
    cut_short: bool = False  # its timeout was cut below the pool's by the request's remaining time


@dataclass(frozen=True, slots=True)
class LateAnswer:
    """An issuer answer that arrived after the gateway gave up on that attempt."""

    request_id: str
    pool: str
    member: str
    response_code: str
    arrived_after_s: float


def _classify(exc: grpc.aio.AioRpcError) -> AttemptKind:
    code = exc.code()
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return AttemptKind.REFUSED
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return AttemptKind.TIMEOUT
    if code == grpc.StatusCode.UNAVAILABLE:
        details = (exc.details() or "").lower()
        if "connection refused" in details or "failed to connect" in details:
            return AttemptKind.NOT_SENT
        return AttemptKind.UNAVAILABLE
    return AttemptKind.ERROR


class LateAnswers:
    """Owns timed-out calls during their late-answer window and records what they bring."""

    def __init__(self, max_pending: int = 2000, keep: int = 10_000) -> None:
        self._pending: set[asyncio.Task[pb.AuthorizeResponse]] = set()
        self._max_pending = max_pending
        self.records: deque[LateAnswer] = deque(maxlen=keep)
        self.total = 0

    def adopt(self, task: asyncio.Task[pb.AuthorizeResponse], member: Member, request_id: str) -> None:
        if len(self._pending) >= self._max_pending:
            task.cancel()  # bounded: under a hung pool we stop listening rather than grow
            return
        self._pending.add(task)
        started = time.monotonic()

        def done(t: asyncio.Task[pb.AuthorizeResponse]) -> None:
            self._pending.discard(t)
            if t.cancelled() or t.exception() is not None:
                return
            resp = t.result()
            self.total += 1
            late = LateAnswer(
                request_id, member.pool, member.name, resp.response_code, time.monotonic() - started
            )
            self.records.append(late)
            if self.total == 1 or self.total % 100 == 0:  # a resumed host can send thousands at once
                log.warning(
                    "late answers recorded: %d so far (latest request_id=%s pool=%s member=%s code=%s)",
                    self.total,
                    request_id,
                    member.pool,
                    member.name,
                    resp.response_code,
                )

        task.add_done_callback(done)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        for task in list(self._pending):
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await task


def _wake(waiter: asyncio.Future[bool], answered: bool) -> None:
    if not waiter.done():
        waiter.set_result(answered)


@dataclass(frozen=True, slots=True)
class Method:
    """An IssuerHost method the router can send with retries (both are idempotent by the acquirer's ids)."""

    name: str
    kind_of: Callable[[Any], AttemptKind]


def _authorize_kind(resp: pb.AuthorizeResponse) -> AttemptKind:
    return AttemptKind.SYSTEM_DECLINE if resp.response_code in SYSTEM_DECLINE_CODES else AttemptKind.ANSWERED


AUTHORIZE = Method("Authorize", _authorize_kind)
REVERSE = Method("Reverse", lambda _: AttemptKind.ANSWERED)


async def run_attempt(
    member: Member,
    request: Any,
    *,
    timeout_s: float,
    late: LateAnswers,
    late_window_s: float,
    metadata: tuple[tuple[str, str], ...] = (),
    method: Method = AUTHORIZE,
) -> Attempt:
    """Send `request` to `member`, waiting at most timeout_s for the answer.

    The call itself runs for timeout_s + late_window_s. This coroutine waits on a
    bare future woken by the call's completion or by a timer, rather than on a
    Task and asyncio.wait: on the hot path that is two fewer objects and
    callbacks per request, and a timed-out call is left running untouched.
    An authorization carries the time it was forwarded (AuthorizeRequest.forwarded_at): the
    issuer's book orders its answers against the gateway's advices by it.
    """
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    if method is AUTHORIZE:
        request.forwarded_at.GetCurrentTime()
    stub_method = getattr(member.stub, method.name)
    call = stub_method(request, timeout=timeout_s + late_window_s, metadata=metadata or None)
    waiter: asyncio.Future[bool] = loop.create_future()
    call.add_done_callback(lambda _: _wake(waiter, True))
    timer = loop.call_later(timeout_s, _wake, waiter, False)
    member.in_flight += 1
    try:
        answered = await waiter
    except asyncio.CancelledError:
        call.cancel()
        raise
    finally:
        timer.cancel()
        member.in_flight -= 1
    elapsed = time.monotonic() - started
    request_id = getattr(request, "request_id", "") or getattr(request, "reversal_id", "")
    if not answered:
        late.adopt(asyncio.ensure_future(call), member, request_id)
        return Attempt(
            member.pool, member.name, AttemptKind.TIMEOUT, elapsed, f"no answer in {timeout_s:.3f}s"
        )
    try:
        resp = await call  # already done: no suspension
    except grpc.aio.AioRpcError as exc:
        return Attempt(
            member.pool, member.name, _classify(exc), elapsed, f"{exc.code().name}: {exc.details()}"
        )
    return Attempt(
        member.pool, member.name, method.kind_of(resp), elapsed, getattr(resp, "response_code", ""), resp
    )
