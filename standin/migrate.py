"""Moving the local journal to Redis once it is reachable again, each decision exactly once.

For every local decision, oldest first (per-card order kept):

  1. absorb  (card's slot)      count the approval in the fleet counters and record it for its
                                request id: idempotent (sorted-set member and record are keyed by
                                decision id / request id);
  2. append  (partition's slot) XADD to the stream, unless the partition's dedupe marker says this
                                decision id is already there: the marker is set in the same script
                                as the XADD, so they happen together or not at all;
  3. mark    (SQLite)           moved_at + stream id, one fsynced transaction per batch.

A crash between 2 and 3 leaves rows unmarked whose entries are in the stream: the
next run appends them again, finds their markers and gets the existing stream
ids back, so nothing is appended twice (as long as the run happens within the
marker TTL, JournalSettings.dedupe_ttl, 72 h by default). A crash between 1 and
2 only repeats an idempotent step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from standin.counters import RedisCounters
from standin.journal import StreamJournal
from standin.sqlite_journal import LocalEntry, SqliteJournal

__all__ = ["BacklogMover"]

log = logging.getLogger(__name__)


class BacklogMover:
    """Moves local decisions to Redis (counters, idempotency record, stream)."""

    def __init__(
        self,
        local: SqliteJournal,
        counters: RedisCounters,
        journal: StreamJournal,
        *,
        batch: int,
        now_ms: Callable[[], int],
    ) -> None:
        self._local = local
        self._counters = counters
        self._journal = journal
        self._batch = batch
        self._now_ms = now_ms

    async def move_batch(self, token: str | None = None) -> int:
        """Move up to one batch (of one card when `token` is given); returns how many were moved.

        Raises StoreUnavailableError or LocalJournalError, after marking what was moved.
        """
        entries = await self._local.pending(self._batch, token)
        moved: list[tuple[str, str]] = []
        try:
            for entry in entries:
                moved.append((entry.outcome.decision_id, await self._move(entry)))
        finally:
            if moved:
                await self._local.mark_moved(moved, self._now_ms())
        return len(moved)

    async def _move(self, entry: LocalEntry) -> str:
        consistent = await self._counters.absorb(
            entry.card_token,
            request_id=entry.request_id,
            kind=entry.kind,
            amount_minor=entry.amount_minor,
            outcome=entry.outcome,
            now_ms=self._now_ms(),
        )
        if not consistent:
            # Decided locally while Redis was down, and again elsewhere through Redis: two decisions
            # for one request id. Both are real answers, both are journaled; settlement advises both.
            log.warning(
                "request %s of card %s has another decision in Redis than local decision %s",
                entry.request_id,
                entry.card_token[:8],
                entry.outcome.decision_id,
            )
        stream_id, _ = await self._journal.append(entry.card_token, entry.outcome.decision_id, entry.fields)
        return stream_id
