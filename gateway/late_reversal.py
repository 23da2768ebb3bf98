"""Without `[standin]`: a reversal to the issuer after a 91 of the gateway's own.

A gateway without stand-in that answers 91 after an attempt that may have reached an
issuer (a timeout, a broken connection: `RouteResult.maybe_reached_issuer`) cannot know
whether that issuer approved too late; if it did, the issuer holds the card for a request
the acquirer was told was declined. `LateReversals.reverse` then sends the issuer a full
reversal (final amount 0, TERMINAL_TIMEOUT, reversal id `gw-91-<request_id>`: idempotent,
a repeat is a redelivery) through the router like any reversal, in the background (the
answer never waits), repeated with backoff until an issuer answers or `give_up_s` passes.

At most `max_pending` are in flight: beyond that one is dropped, counted and logged. They
are kept in memory only: a crash or stop loses the pending ones (logged on close). With
`[standin]` configured the 91 is journaled and advised instead, which is durable.

Counted in `authgw.late_reversals {outcome}`: acknowledged, given_up, dropped, lost (pending at close).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter as Tally
from collections.abc import Callable

from opentelemetry.metrics import Counter

from authgw.v1 import authorization_pb2 as pb
from gateway.attempt import REVERSE
from gateway.router import Router

__all__ = ["LateReversals", "late_reversal_of"]

log = logging.getLogger("authgw.late_reversal")

MAX_PENDING = 10_000
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0


def late_reversal_of(request: pb.AuthorizeRequest) -> pb.ReverseRequest:
    """The full reversal of `request` the gateway sends after its own 91."""
    return pb.ReverseRequest(
        acquirer_id=request.acquirer_id,
        reversal_id=f"gw-91-{request.request_id}",
        original_request_id=request.request_id,
        pan=request.pan,
        final_amount_minor=0,
        reason=pb.TERMINAL_TIMEOUT,
        currency=request.currency,
        transmitted_at=request.transmitted_at,
        original_amount_minor=request.amount_minor,
    )


class LateReversals:
    """Background full reversals after the gateway's own 91 (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        *,
        attempt_deadline_s: float,
        give_up_s: float,
        max_pending: int = MAX_PENDING,
        counter: Counter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        self._attempt_deadline_s = attempt_deadline_s
        self._give_up_s = give_up_s
        self._max_pending = max_pending
        self._counter = counter
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.outcomes: Tally[str] = Tally()  # by outcome, as counted in authgw.late_reversals

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def _count(self, outcome: str, n: int = 1) -> None:
        self.outcomes[outcome] += n
        if self._counter is not None and n:
            self._counter.add(n, {"outcome": outcome})

    def reverse(self, request: pb.AuthorizeRequest) -> None:
        """Start reversing `request` in the background (never blocks)."""
        if len(self._tasks) >= self._max_pending:
            self._count("dropped")
            log.error(
                "request %s: 91 after a possible issuer attempt; %d reversals already pending, "
                "this one is dropped (the issuer may keep a hold)",
                request.request_id,
                len(self._tasks),
            )
            return
        task = asyncio.create_task(self._run(late_reversal_of(request)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, reversal: pb.ReverseRequest) -> None:
        give_up_at = self._clock() + self._give_up_s
        backoff = _FIRST_BACKOFF_S
        tries = 0
        while True:
            tries += 1
            now = self._clock()
            result = await self._router.route(reversal, now + self._attempt_deadline_s, method=REVERSE)
            if result.response is not None or result.refused is not None:
                self._count("acknowledged")
                log.info("reversal %s acknowledged after %d tries", reversal.reversal_id, tries)
                return
            wait = random.uniform(backoff / 2, backoff)
            if self._clock() + wait >= give_up_at:
                self._count("given_up")
                log.error(
                    "reversal %s: no issuer answered in %d tries over %.0f s, given up "
                    "(the issuer may keep a hold)",
                    reversal.reversal_id,
                    tries,
                    self._give_up_s,
                )
                return
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def close(self) -> None:
        """Stop: pending reversals are lost (in memory only), logged and counted."""
        tasks = list(self._tasks)
        if tasks:
            log.error("%d reversals after the gateway's 91 still pending at stop: lost", len(tasks))
            self._count("lost", len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
