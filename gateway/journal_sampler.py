"""Samples the stand-in journal's depth off the hot path, for the metrics' observable gauges.

Metric readers collect from their own thread and cannot await Redis or SQLite,
so a task on the gateway's loop asks the engine every `interval_s` and keeps
the answers; the gauges read them. A store that could not be read is left out
of the next collection rather than reported with a stale number.

    store          depth                                      oldest
    redis          entries in the partition streams           first entry's id (ms) of any stream
    redis_pending  delivered to settlement, not acknowledged  -
    dead_letters   entries settlement gave up on for now      -
    local          SQLite decisions not yet moved to Redis    decided_at of the oldest

It also reads each exposure budget's fleet-wide total against its ceiling (exposure.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from authgw.tasks import cancel_and_wait
from standin import StandIn, StandInError

__all__ = ["JournalSampler"]

log = logging.getLogger("authgw.journal_sampler")


class JournalSampler:
    """Keeps the latest journal depth and oldest-entry time of one stand-in engine."""

    def __init__(
        self, engine: StandIn, *, interval_s: float = 5.0, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._wall_clock = wall_clock
        self.depth: dict[str, int] = {}
        self.oldest_ms: dict[str, int] = {}
        self.exposure: dict[str, tuple[int, int]] = {}
        """Budget name -> (approved in its period fleet-wide, the budget); kept while Redis is away."""
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def oldest_age_s(self) -> dict[str, float]:
        """Age of the oldest entry per store read; 0 for a store read empty (an alert needs the
        series to exist when all is well, not only when something waits)."""
        now_ms = self._wall_clock() * 1000
        ages: dict[str, float] = {store: 0.0 for store in ("local", "redis") if store in self.depth}
        ages.update({store: max(0.0, (now_ms - ms) / 1000) for store, ms in self.oldest_ms.items()})
        return ages

    async def sample(self) -> None:
        """Read the engine once (also used by tests)."""
        depth: dict[str, int] = {}
        oldest: dict[str, int] = {}
        try:
            status = await self._engine.status()
            depth["local"] = status.local_backlog
            if status.oldest_local_ms is not None:
                oldest["local"] = status.oldest_local_ms
            if status.redis_up:
                stream = await self._engine.stream_backlog()
                depth["redis"] = stream.entries
                depth["redis_pending"] = stream.pending
                depth["dead_letters"] = stream.dead_letters
                if stream.oldest_ms is not None:
                    oldest["redis"] = stream.oldest_ms
                self.exposure = {
                    b.name: (b.exposure_minor, b.budget_minor) for b in await self._engine.exposure()
                }
        except StandInError as exc:
            if not self._failing:
                log.warning("cannot read the journal depth for metrics: %s", exc)
            self._failing = True
        else:
            self._failing = False
        self.depth, self.oldest_ms = depth, oldest

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="journal-sampler")

    async def close(self) -> None:
        """Stop sampling, after one last sample so that the final metric export is current."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
            await self.sample()
