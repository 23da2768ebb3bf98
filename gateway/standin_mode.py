"""Stand-in mode: when every pool is down, answer at once and probe pools in the background.

Entering: a request found no pool able to take it (every pool drained, failing,
in a decline storm, or with every member ejected or gone). From then on
requests go straight to stand-in, with no per-request wait on dead pools.

Leaving: a background prober sends grpc.health.v1 Check (not customer requests)
to every member every probe interval; after K consecutive rounds in which some
pool had a SERVING member, the gateway leaves stand-in mode and gives those
members and pools a clean slate. Hysteresis: a flapping issuer that answers one
probe in two never brings the gateway back, so decisions do not bounce.

Relapse: a health probe does not see what customers see (a primary that answers
Check at once but Authorize just after the attempt timeout is SERVING to the
prober and failing to every request). When the gateway enters stand-in mode
again within `relapse_window_s` of leaving it, the rounds needed to leave double
(up to `max_rounds_to_leave`): each bounce sends a burst of real requests into
timeouts (and the issuer approves them late), so bounces become rarer, not
once a second. Out of stand-in mode for longer than the window, the count is back
to `good_rounds_to_leave`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authgw.tasks import cancel_and_wait
from gateway.member import Member
from gateway.router import Router
from standin.types import Reason

__all__ = ["ModeChange", "StandInMode"]

log = logging.getLogger("authgw.standin_mode")

_HISTORY = 100


@dataclass(frozen=True, slots=True)
class ModeChange:
    """A transition of stand-in mode, for status, logs and telemetry."""

    active: bool
    reason: str
    at: float  # wall clock


class StandInMode:
    """Owns the stand-in mode flag and the background prober that ends it."""

    def __init__(
        self,
        router: Router,
        *,
        probe_interval_s: float = 0.25,
        probe_timeout_s: float = 0.2,
        good_rounds_to_leave: int = 3,
        max_rounds_to_leave: int = 12,
        relapse_window_s: float = 5.0,
        on_change: Callable[[ModeChange], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        self._interval = probe_interval_s
        self._timeout = probe_timeout_s
        self._base_needed = self._needed = good_rounds_to_leave
        self._max_needed = max(max_rounds_to_leave, good_rounds_to_leave)
        self._relapse_window_s = relapse_window_s
        self._left_at: float | None = None  # monotonic time stand-in mode was last left
        self._clock = clock
        self._on_change = on_change
        self.active = False
        self.reason = ""  # why the mode last changed, for status and logs
        self.cause = Reason.ALL_POOLS_FAILED  # why no issuer answered when the mode was entered
        self.good_rounds = 0
        self.history: deque[ModeChange] = deque(maxlen=_HISTORY)  # the latest changes, for status
        self._task: asyncio.Task[None] | None = None

    def maybe_enter(self, cause: Reason) -> None:
        """After a request no issuer answered: enter when no pool can take requests."""
        if self.active or self._router.has_healthy_pool():
            return  # half-open trials of failing pools are the prober's job once in stand-in mode
        self.cause = cause
        self._needed = self._rounds_after(self._left_at)
        self._set(True, cause.value)
        if self._needed > self._base_needed:
            log.warning("stand-in mode relapsed: %d good probe rounds needed to leave", self._needed)
        self.good_rounds = 0
        self._task = asyncio.create_task(self._probe_loop(), name="standin-prober")

    @property
    def rounds_to_leave(self) -> int:
        """Good probe rounds the current (or next) stand-in period needs to end."""
        return self._needed

    def _rounds_after(self, left_at: float | None) -> int:
        """Rounds needed on entering: doubled after a relapse (left within the window), else the base."""
        if left_at is None or self._clock() - left_at > self._relapse_window_s:
            return self._base_needed
        return min(self._needed * 2, self._max_needed)

    def _set(self, active: bool, reason: str) -> None:
        self.active, self.reason = active, reason
        change = ModeChange(active, reason, time.time())
        self.history.append(change)
        log.warning("stand-in mode %s (%s)", "ON" if active else "OFF", reason)
        if self._on_change is not None:
            self._on_change(change)

    async def _probe_loop(self) -> None:
        while self.active:
            started = time.monotonic()
            try:
                healthy = await self._probe_round()
            except Exception:  # a bug in one round must not leave the gateway in stand-in mode for good
                log.exception("stand-in probe round failed; counted as a bad round")
                healthy = []
            if healthy:
                self.good_rounds += 1
                if self.good_rounds >= self._needed:
                    self._router.restore(healthy)
                    self._left_at = self._clock()
                    self._set(False, f"{self._needed} consecutive good probe rounds")
                    return
            else:
                self.good_rounds = 0
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    async def _probe_round(self) -> list[Member]:
        """Probe every member of every non-drained pool; return the SERVING ones."""
        members = [m for p in self._router.pools if not p.drained for m in p.members.values()]
        results = await asyncio.gather(*(self._probe(m) for m in members))
        return [m for m, ok in zip(members, results, strict=True) if ok]

    async def _probe(self, member: Member) -> bool:
        if member.link is not None:  # an ISO 8583 host: an 0800 echo
            return await member.link.echo(self._timeout)
        stub = health_pb2_grpc.HealthStub(member.channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError:
            return False
        except (grpc.aio.UsageError, grpc.aio.InternalError):  # the member left: its channel is closed
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        self.active = False
        task, self._task = self._task, None
        await cancel_and_wait(task)
