"""Which journal partitions this settlement worker settles: leases, fair share, one task each.

Every lease round (ttl/4) the owner renews the leases it holds (a lost lease stops
its partition's task), takes at most its fair share of the partitions (partitions /
live workers, from the workers' heartbeats, rounded up), hands the excess over when
another worker has joined (the partition's task finishes its batch, then the lease
is released), and acquires free partitions up to its share. A partition it takes
may hold a dead worker's consumer in the group: consumers idle for an hour with
nothing pending are pruned when the partition changes hands.

How one partition is settled is the worker's business (worker.py): the owner only
starts `settle(partition, stop)` as a task and stops it by setting `stop`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from authgw.tasks import stop_then_cancel
from standin.settlement.lease import PartitionLeases
from standin.settlement.store import SettleStore

__all__ = ["PartitionOwner", "SettlePartition"]

log = logging.getLogger(__name__)

_DEAD_CONSUMER_IDLE_MS = 3_600_000  # a group consumer idle this long with nothing pending is a dead worker's

SettlePartition = Callable[[int, asyncio.Event], Coroutine[Any, Any, None]]
"""Settles one partition until its event is set (the worker's loop)."""


class PartitionOwner:
    """The partitions one worker holds a lease on, and the task settling each."""

    def __init__(
        self,
        *,
        leases: PartitionLeases,
        store: SettleStore,
        partitions: int,
        heartbeat: timedelta,
        grace: timedelta,
        settle: SettlePartition,
        wall_clock: Callable[[], float],
    ) -> None:
        """Args:
        partitions: how many partition streams the journal has.
        heartbeat: the workers' heartbeat interval (a worker silent for 3 of them is not live).
        grace: how long a stopping partition task may take to finish its batch.
        """
        self._leases = leases
        self._store = store
        self._total = partitions
        self._fresh_ms = 3 * heartbeat.total_seconds() * 1000
        self._grace_s = grace.total_seconds()
        self._settle = settle
        self._wall_clock = wall_clock
        self._tasks: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    def held(self) -> list[int]:
        return self._leases.held()

    def valid_for(self, partition: int, margin_s: float) -> bool:
        """Is the lease of `partition` ours for at least `margin_s` more seconds?"""
        return self._leases.valid_for(partition, margin_s)

    async def maintain(self) -> None:
        """One lease round (see the module docstring). Raises StandInError when Redis fails."""
        for p in list(self._tasks):
            if not await self._leases.renew(p):
                log.warning("settlement worker %s lost the lease of partition %d", self._leases.worker_id, p)
                await self.stop([p])
        for p in [p for p, (_, task) in self._tasks.items() if task.done()]:
            await self.stop([p])  # a partition task that ended by itself (a bug): restarted below
        share = await self._fair_share()
        excess = sorted(self._tasks)[share:]
        if excess:
            log.info("settlement worker %s hands over partitions %s", self._leases.worker_id, excess)
            await self.stop(excess)
            for p in excess:
                await self._leases.release(p)
            return
        for p in range(self._total):
            if len(self._tasks) >= share:
                break
            if p not in self._tasks and await self._leases.acquire(p):
                log.info("settlement worker %s settles partition %d", self._leases.worker_id, p)
                await self._store.prune_consumers(p, _DEAD_CONSUMER_IDLE_MS)
                stop = asyncio.Event()
                task = asyncio.create_task(self._settle(p, stop), name=f"settle-{p}")
                self._tasks[p] = (stop, task)

    async def _fair_share(self) -> int:
        if self._total == 1:
            return 1
        now_ms = self._wall_clock() * 1000
        workers = await self._store.workers()
        live = sum(1 for w in workers.values() if now_ms - float(w.get("updated_ms", 0)) < self._fresh_ms)
        return math.ceil(self._total / max(1, live))

    async def stop(self, partitions: list[int]) -> None:
        """Stop settling `partitions`: each task finishes its batch within the grace, else is cancelled."""
        stopping = [self._tasks.pop(p) for p in partitions if p in self._tasks]
        for stop, _ in stopping:
            stop.set()  # all at once: they finish their batches in parallel
        for stop, task in stopping:
            await stop_then_cancel(task, stop, self._grace_s)

    async def stop_all(self) -> None:
        await self.stop(list(self._tasks))

    async def release_all(self) -> None:
        """Give every lease up (clean shutdown; raises StandInError when Redis fails)."""
        for p in self._leases.held():
            await self._leases.release(p)
