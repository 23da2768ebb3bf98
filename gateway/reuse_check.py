"""A reused request id on the issuer path, while stand-in decisions wait for their advice.

A request id reused with other content is refused (ALREADY_EXISTS / 94) wherever the record of
the first content is. Stand-in refuses it from its own records (lua.DECIDE, sqlite_rules), and an
issuer from its books; but between a stand-in decision and its advice reaching the issuer, only
stand-in holds that record: a reuse the issuers answer in that interval would be decided as a new
transaction. So while decisions wait for their advice, the issuer path asks stand-in first
(`StandIn.recorded_for_other_content`: the card's record in Redis; this gateway's local journal
too while Redis is away or that journal held entries at the last look).

Only then: the check costs one Redis read, and in steady state nothing waits (a flag). It is on
while the fleet's journal held entries at the last look (`interval_s`; the local backlog counts)
or this gateway answered in stand-in within `recent_s` (a decision made since the last look). A
check that cannot read its stores lets the request go on (counted in `unreadable`), and so does
one not answered within 20 ms or a tenth of the request's remaining time (counted in `late`): the
issuer path never depends on Redis, nor waits on it for long. `[standin] reuse_check = false` in
the gateway's file turns it off (the reuse then reaches an issuer, which approves it as new;
stand-in refuses it only if an attempt fails over to it).

Not covered: a reuse of a decision made on another gateway's local journal while Redis was away
(no shared record until it is moved), and an issuer-answered original reused in stand-in (no
record of issuer answers is kept: `docs/proposals/reused-id-claim.md`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from authgw.tasks import cancel_and_wait
from standin import StandIn, StandInError, StandInRequest

__all__ = ["ReuseCheck"]

log = logging.getLogger("authgw.reuse_check")


class ReuseCheck:
    """Whether the issuer path must ask stand-in about a request id, and the asking."""

    def __init__(
        self,
        engine: StandIn,
        *,
        enabled: bool = True,
        interval_s: float = 1.0,
        recent_s: float = 10.0,
        max_wait_s: float = 0.02,
        wait_share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._enabled = enabled
        self._interval_s = interval_s
        self._recent_s = recent_s
        self._max_wait_s = max_wait_s
        self._wait_share = wait_share
        self._asking: set[asyncio.Task[bool]] = set()
        self._clock = clock
        self._waiting = True  # until the first look: an outage may have ended just before a restart
        self._local_waiting = True  # this gateway's local journal has entries (its last look)
        self._last_standin = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.checked = 0
        self.refused = 0
        self.unreadable = 0
        self.late = 0

    @property
    def active(self) -> bool:
        if not self._enabled:
            return False
        return self._waiting or self._clock() - self._last_standin < self._recent_s

    def note_standin(self) -> None:
        """This gateway just answered in stand-in (a decision the last look did not see)."""
        self._last_standin = self._clock()

    async def refuses(self, request: StandInRequest, deadline: float | None = None) -> bool:
        """True when stand-in recorded this request id for other content.

        Waits at most `max_wait_s`, and at most `wait_share` of the time left before `deadline`
        (this check's clock): the answer is then given up (counted in `late`) and the request goes
        on, while the read finishes in the background (cancelling it would cost its connection).
        A stalled Redis must not spend a short client deadline (chaos-short-deadlines after an
        outage, while settlement loads Redis)."""
        self.checked += 1
        wait_s = self._max_wait_s
        if deadline is not None:
            wait_s = max(0.0, min(wait_s, self._wait_share * (deadline - self._clock())))
        task = asyncio.ensure_future(self._ask(request))
        self._asking.add(task)
        task.add_done_callback(self._asking.discard)
        try:
            async with asyncio.timeout(wait_s):
                reused = await asyncio.shield(task)
        except TimeoutError:
            self.late += 1
            if self.late == 1 or self.late % 1000 == 0:
                log.warning("reused-id check unanswered in %.0f ms (%d so far)", wait_s * 1000, self.late)
            return False
        if reused:
            self.refused += 1
        return reused

    async def _ask(self, request: StandInRequest) -> bool:
        try:
            return await self._engine.recorded_for_other_content(request, local=self._local_waiting)
        except StandInError as exc:
            self.unreadable += 1
            if self.unreadable == 1 or self.unreadable % 1000 == 0:
                log.warning("reused-id check skipped (%d so far): %s", self.unreadable, exc)
            return False

    async def look(self) -> None:
        """Read whether decisions wait for their advice (also used by tests)."""
        try:
            local, fleet = await self._engine.unsettled()
        except StandInError:  # unknown: keep checking (the engine reads what it can)
            self._waiting = self._local_waiting = True
        else:
            self._waiting, self._local_waiting = local + fleet > 0, local > 0

    async def _run(self) -> None:
        while True:
            await self.look()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        if self._enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="reuse-check")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        for asking in list(self._asking):
            await cancel_and_wait(asking)
