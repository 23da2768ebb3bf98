"""Issuer-reported balances handed to stand-in off the answer's path: a bounded queue and one writer.

`offer()` is called with every issuer answer and never waits: an answer without
`available_balance_minor` costs a field test; one with it is put on a bounded queue (full: dropped
and counted, the card keeps its previous balance until it expires). One task writes them to the
card's slot in Redis (standin/balances.py) one at a time; a Redis failure loses that balance
(counted), never an answer. `close()` stops the writer; what is still queued is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from authgw.v1 import authorization_pb2 as pb
from standin.engine import StandIn
from standin.errors import StandInError

__all__ = ["BalanceFeed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Reported:
    pan: str
    available_minor: int
    currency: str


class BalanceFeed:
    """Keeps the issuer's last balance per card for stand-in (see the module docstring)."""

    def __init__(self, engine: StandIn, queue_size: int) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[_Reported] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def offer(self, request: pb.AuthorizeRequest, response: pb.AuthorizeResponse) -> None:
        """Queue the balance an issuer answer carries, if any; never blocks."""
        if not response.HasField("available_balance_minor"):
            return
        reported = _Reported(request.pan, response.available_balance_minor, request.currency)
        try:
            self._queue.put_nowait(reported)
        except asyncio.QueueFull:
            self.dropped += 1

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_all(), name="authgw-balance-feed")

    async def close(self) -> None:
        """Stop the writer (idempotent); balances still queued are dropped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drained(self) -> None:
        """Wait until every queued balance is written or failed (tests, benchmarks)."""
        await self._queue.join()

    async def _write_all(self) -> None:
        while True:
            reported = await self._queue.get()
            try:
                await self._engine.remember_balance(reported.pan, reported.available_minor, reported.currency)
                self.written += 1
            except StandInError as exc:
                self.failed += 1
                log.debug("balance not kept: %s", exc)
            finally:
                self._queue.task_done()
