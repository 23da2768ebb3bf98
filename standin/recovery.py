"""Redis health as the engine sees it, and the background work around it.

One task per engine:
  - while Redis is down: PING it every probe interval (decisions go local meanwhile, so a
    dead Redis costs one deadline, not one per decision);
  - once it is up: move the local backlog to Redis (migrate.py), then keep the local copy of
    the issuer's card statuses fresh (every LocalSettings.card_status_sync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from authgw.tasks import cancel_and_wait
from standin.cardstatus import fetch_card_statuses
from standin.errors import ClosedError, LocalJournalError, StandInError, StoreUnavailableError
from standin.journal import StreamJournal
from standin.migrate import BacklogMover
from standin.redis_io import RedisGate
from standin.settings import LocalSettings, RedisSettings
from standin.sqlite_journal import SqliteJournal

__all__ = ["Recovery"]

log = logging.getLogger(__name__)


class Recovery:
    """Tracks whether Redis is usable and runs the probe / backlog / card-status task."""

    def __init__(
        self,
        gate: RedisGate,
        stream: StreamJournal,
        local: SqliteJournal,
        mover: BacklogMover,
        *,
        redis_settings: RedisSettings,
        local_settings: LocalSettings,
    ) -> None:
        self._gate = gate
        self._stream = stream
        self._local = local
        self._mover = mover
        self._probe_s = redis_settings.probe_interval.total_seconds()
        self._local_settings = local_settings
        self.redis_up = True
        self._pending_tokens: set[str] = set()  # cards with local decisions not yet in Redis
        self._backlog_dirty = False
        self._next_status_sync = 0.0  # loop time of the next card-status copy (0: at once)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, pending_tokens: set[str], name: str) -> None:
        self._pending_tokens = pending_tokens
        self._backlog_dirty = bool(pending_tokens)
        self._task = asyncio.create_task(self._run(), name=name)

    async def close(self) -> None:
        """Cancel the task and wait for it; safe to call twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)  # cancels again until it ends: redis-py may drop one cancellation

    def mark_down(self, exc: StandInError) -> None:
        """Stop sending decisions to Redis until a probe succeeds."""
        if self.redis_up:
            log.warning("redis unavailable, stand-in decides on the local journal: %s", exc)
            self.redis_up = False
            self._wake.set()

    def local_written(self, token: str) -> None:
        """A decision of this card went to the local journal: it must be moved later."""
        self._pending_tokens.add(token)
        self._backlog_dirty = True
        self._wake.set()

    async def before_redis_decision(self, token: str) -> None:
        """Move this card's local decisions first, so the fleet counters include them.

        Raises StoreUnavailableError.
        """
        if token not in self._pending_tokens:
            return
        try:
            while await self._mover.move_batch(token) >= self._local_settings.migrate_batch:
                pass
        except LocalJournalError as exc:  # the Redis decision is still sound; the task retries later
            log.warning("cannot read the local backlog of card %s: %s", token[:8], exc)
            return
        self._pending_tokens.discard(token)

    async def move_backlog(self) -> int:
        """Move the whole local backlog now; returns how many decisions were moved."""
        total = 0
        while moved := await self._mover.move_batch():
            total += moved
        self._pending_tokens = await self._local.pending_tokens()
        return total

    # -- the task -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stand-in background task failed; retrying")
                await asyncio.sleep(self._probe_s)

    async def _step(self) -> None:
        self._wake.clear()
        if not self.redis_up:
            await asyncio.sleep(self._probe_s)
            try:
                await self._gate.ping()
                await self._stream.ensure_groups()
            except StoreUnavailableError:
                return
            log.info("redis is back; moving the local backlog")
            self.redis_up = True
            return
        if self._backlog_dirty:
            await self._move_backlog_paced()
            return
        if asyncio.get_running_loop().time() >= self._next_status_sync:
            await self._sync_card_statuses()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(self._next_status_sync):
                await self._wake.wait()

    async def _move_backlog_paced(self) -> None:
        self._backlog_dirty = False
        pause_s = self._local_settings.migrate_interval.total_seconds()
        try:
            while True:
                if await self._mover.move_batch() == 0:
                    break
                await asyncio.sleep(pause_s)
            self._pending_tokens = await self._local.pending_tokens()
        except StoreUnavailableError as exc:
            self._backlog_dirty = True
            self.mark_down(exc)
        except LocalJournalError as exc:
            self._backlog_dirty = True
            log.warning("cannot move the local backlog: %s", exc)
            await asyncio.sleep(pause_s)

    async def _sync_card_statuses(self) -> None:
        """Copy the issuer's card statuses into the local journal, for decisions made without Redis."""
        interval = self._local_settings.card_status_sync.total_seconds()
        self._next_status_sync = asyncio.get_running_loop().time() + interval
        try:
            statuses = await fetch_card_statuses(self._gate)
            await self._local.replace_card_statuses(statuses)
        except StoreUnavailableError as exc:
            self.mark_down(exc)
        except (LocalJournalError, ClosedError) as exc:
            log.warning("cannot copy card statuses to the local journal: %s", exc)
