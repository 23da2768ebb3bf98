"""The local journal: where decisions and reversals are recorded, and counted, while Redis is unreachable.

One SQLite file per gateway instance, WAL with synchronous=FULL (each commit is
fsynced before stand-in answers), all access on one dedicated thread so the
event loop never blocks on disk. While Redis is down it is also the limit
store: a card's local approvals in the window are summed against a fraction of
the fleet limits (LocalSettings.limit_fraction), in the same transaction that
records the decision (rules in sqlite_rules.py), and card status is read from a
copy of the issuer's list refreshed from Redis while it was up. Rows keep the
exact stream fields (PAN encrypted) until they are moved to Redis (migrate.py);
a moved row keeps its stream id.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from standin.errors import ClosedError, LocalJournalError
from standin.outcome import Outcome, Proposal
from standin.rules import Assessment
from standin.sqlite_rules import (
    REVERSAL,
    Local,
    RequestKey,
    decide_in,
    insert_decision,
    latest_digest,
    outcome_of,
    reverse_in,
)
from standin.types import CardStatus, LimitKind, ReversalStatus, StandInReversal

__all__ = ["LocalEntry", "SqliteJournal"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,  -- recording order: keeps per-card order when moved
    decision_id        TEXT NOT NULL UNIQUE,               -- the journal entry's id
    card_token         TEXT NOT NULL,
    request_id         TEXT NOT NULL,                      -- a reversal's row: its reversal id
    limit_kind         TEXT NOT NULL,
    limit_amount_minor INTEGER NOT NULL,                   -- amount in limit currency (after reversals)
    approved           INTEGER NOT NULL,
    decided_at_ms      INTEGER NOT NULL,
    counted_in_redis   INTEGER NOT NULL,                   -- 1: counted by Redis, only its append failed
    fields             TEXT NOT NULL,                      -- JSON stream entry (entry.py), PAN encrypted
    stream_id          TEXT,                               -- set once in the Redis stream
    moved_at_ms        INTEGER
);
CREATE INDEX IF NOT EXISTS decisions_request ON decisions (card_token, request_id);
CREATE INDEX IF NOT EXISTS decisions_spend
    ON decisions (card_token, limit_kind, decided_at_ms) WHERE approved = 1;
CREATE INDEX IF NOT EXISTS decisions_pending ON decisions (card_token, seq) WHERE moved_at_ms IS NULL;
CREATE TABLE IF NOT EXISTS card_status (                   -- copy of the issuer's list (cardstatus.py)
    card_token TEXT PRIMARY KEY,
    status     TEXT NOT NULL
) WITHOUT ROWID;
"""

# Columns added since the first format: a file written by an older gateway is upgraded at open.
_COLUMNS = (
    ("entry_kind", "TEXT NOT NULL DEFAULT 'decision'"),  # decision | reversal
    ("acquirer_id", "TEXT NOT NULL DEFAULT '0'"),
    ("digest", "TEXT NOT NULL DEFAULT ''"),  # keyed digest of the request's content
    ("txn_amount_minor", "INTEGER NOT NULL DEFAULT 0"),  # in the transaction's currency
    ("answered_at_ms", "INTEGER"),  # last time this decision was given to the acquirer
    ("final_amount_minor", "INTEGER"),  # after reversals (transaction currency); NULL: none
    ("released", "INTEGER NOT NULL DEFAULT 0"),  # 1: fully reversed, no longer counted
    ("original_request_id", "TEXT"),  # a reversal's original
    ("outcome_status", "TEXT"),  # a reversal's ReversalStatus; a moved decision: how ABSORB took it
    ("lost_call", "TEXT NOT NULL DEFAULT ''"),  # a Redis DECIDE whose reply was lost before this decision
)

_SELECT = (
    "SELECT seq, entry_kind, card_token, acquirer_id, request_id, digest, limit_kind, limit_amount_minor,"
    " txn_amount_minor, decided_at_ms, answered_at_ms, counted_in_redis, lost_call, fields, decision_id"
    " FROM decisions WHERE moved_at_ms IS NULL"
)
_SELECT_PENDING_OF_CARD = _SELECT + " AND card_token = ? ORDER BY seq LIMIT ?"
_Row = tuple[int, str, str, str, str, str, str, int, int, int, int | None, int, str, str, str]


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """A decision or reversal in the local journal not yet moved to the Redis stream."""

    seq: int
    entry_kind: str  # decision | reversal | append_only (sqlite_rules.APPEND_ONLY)
    card_token: str
    acquirer_id: str
    request_id: str  # a reversal's: its reversal id
    digest: str
    kind: LimitKind
    amount_minor: int
    txn_amount_minor: int
    counted_in_redis: bool
    outcome: Outcome | None  # None for a reversal
    fields: dict[str, str]
    lost_call: str = ""  # a Redis call for this request whose reply was lost before this decision
    entry_id: str = ""  # the row's id (its decision_id column): what mark_moved is given back


def _entry(row: _Row) -> LocalEntry:
    (
        seq,
        entry_kind,
        token,
        acquirer,
        request_id,
        digest,
        kind,
        amount,
        txn,
        decided,
        answered,
        counted,
        lost,
        raw,
        entry_id,
    ) = row
    fields: dict[str, str] = json.loads(raw)
    outcome = (
        None if entry_kind == REVERSAL else outcome_of(fields, decided, answered or decided, fresh=False)
    )
    return LocalEntry(
        seq, entry_kind, token, acquirer, request_id, digest, LimitKind(kind), amount, txn, bool(counted),
        outcome, fields, lost, entry_id,
    )  # fmt: skip


class SqliteJournal:
    """The local SQLite journal, driven from one dedicated thread."""

    def __init__(self, path: Path, *, window: timedelta) -> None:
        self.path = path
        self._window_ms = int(window / timedelta(milliseconds=1))
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Open (creating or upgrading if needed) the database on the journal's own thread."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="standin-sqlite")
        await self._run(self._open)

    async def close(self) -> None:
        """Close the database and stop its thread; safe to call twice."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
        finally:
            executor.shutdown(wait=False)

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise ClosedError("local journal is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except (sqlite3.Error, OSError) as exc:
            raise LocalJournalError(f"local journal {self.path}: {exc}") from exc
        except RuntimeError as exc:  # executor shut down under us
            raise ClosedError(f"local journal {self.path}: {exc}") from exc

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            db.close()
            raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode={mode})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        present = {row[1] for row in db.execute("PRAGMA table_info(decisions)")}
        for name, spec in _COLUMNS:
            if name not in present:
                db.execute(f"ALTER TABLE decisions ADD COLUMN {name} {spec}")
        db.execute(  # the exposure budget's local share (sqlite_rules.py)
            "CREATE INDEX IF NOT EXISTS decisions_exposure ON decisions (decided_at_ms) WHERE approved = 1"
        )
        db.execute(
            "CREATE INDEX IF NOT EXISTS decisions_original ON decisions (card_token, original_request_id)"
            " WHERE entry_kind = 'reversal'"
        )
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ClosedError("local journal is closed")
        return self._db

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    # -- decisions and reversals -----------------------------------------------------------------------

    async def decide(
        self,
        key: RequestKey,
        assessment: Assessment,
        proposal: Proposal,
        build_fields: Callable[[Outcome], dict[str, str]],
    ) -> Outcome:
        """Decide against the local counters and record, in one fsynced transaction (sqlite_rules.py).

        Args:
            assessment: with its limit already scaled to the local fraction.
            build_fields: makes the entry fields of the outcome (runs on the journal thread).

        Raises ReusedRequestIdError when the request id was decided here for other content.
        """
        window_ms = self._window_ms
        return await self._run(
            lambda: self._transaction(
                lambda db: decide_in(
                    db, key, assessment, proposal, build_fields=build_fields, window_ms=window_ms
                )
            )
        )

    async def record(self, local: Local, fields: dict[str, str], *, marker: str = "") -> None:
        """Record a decision Redis already counted but could not journal (idempotent by decision id);
        `marker`: an entry that only needs appending, under this dedupe marker (APPEND_ONLY), kept
        apart from its decision's row; counted_in_redis says whether Redis counted it as unadvised."""
        await self._run(lambda: insert_decision(self._conn(), local, fields, marker=marker))

    async def reverse(
        self,
        token: str,
        reversal: StandInReversal,
        entry_id: str,
        build_fields: Callable[[ReversalStatus], dict[str, str]],
        now_ms: int,
    ) -> tuple[ReversalStatus, str, bool]:
        """Apply or record a reversal locally, in one fsynced transaction: (status, entry id, new)."""
        return await self._run(
            lambda: self._transaction(
                lambda db: reverse_in(
                    db, token, reversal, entry_id=entry_id, build_fields=build_fields, now_ms=now_ms
                )
            )
        )

    async def replace_card_statuses(self, statuses: dict[str, CardStatus]) -> None:
        """Replace the local copy of the issuer's card statuses (one transaction)."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM card_status")
            db.executemany(
                "INSERT INTO card_status (card_token, status) VALUES (?, ?)",
                [(token, status.value) for token, status in statuses.items()],
            )

        await self._run(lambda: self._transaction(work))

    # -- backlog ------------------------------------------------------------------------------------

    async def pending(
        self, limit: int, token: str | None = None, *, exclude: Collection[str] = ()
    ) -> list[LocalEntry]:
        """The oldest entries not yet in the Redis stream (of one card when `token` is given).

        Args:
            exclude: card tokens whose entries are left out (cards the mover cannot move now).
        """
        skip = sorted(exclude)
        but = f" AND card_token NOT IN ({', '.join('?' * len(skip))})" if skip else ""

        def work() -> list[LocalEntry]:
            db = self._conn()
            if token is None:
                rows = db.execute(_SELECT + but + " ORDER BY seq LIMIT ?", (*skip, limit)).fetchall()
            else:
                rows = db.execute(_SELECT_PENDING_OF_CARD, (token, limit)).fetchall()
            return [_entry(r) for r in rows if r[2] not in exclude]

        return await self._run(work)

    async def pending_by_pan_key(self) -> dict[str, int]:
        """Entries not yet in the Redis stream, by the id of the PAN key that sealed them."""

        def work() -> dict[str, int]:
            rows = self._conn().execute(
                "SELECT json_extract(fields, '$.pan_key_id'), COUNT(*) FROM decisions"
                " WHERE moved_at_ms IS NULL GROUP BY 1"
            )
            return {str(key_id): int(count) for key_id, count in rows}

        return await self._run(work)

    async def pending_tokens(self) -> set[str]:
        """Tokens of the cards that have entries not yet in the Redis stream."""

        def work() -> set[str]:
            rows = self._conn().execute("SELECT DISTINCT card_token FROM decisions WHERE moved_at_ms IS NULL")
            return {r[0] for r in rows}

        return await self._run(work)

    async def mark_moved(self, moved: list[tuple[str, str, str]], now_ms: int) -> None:
        """Mark (entry id, stream id, how) triples as moved, in one fsynced transaction."""

        def work(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE decisions SET stream_id = ?, moved_at_ms = ?,"
                " outcome_status = COALESCE(outcome_status, ?) WHERE decision_id = ?",
                [(stream_id, now_ms, how, entry_id) for entry_id, stream_id, how in moved],
            )

        await self._run(lambda: self._transaction(work))

    async def recorded_digest(self, token: str, acquirer_id: str, request_id: str) -> str | None:
        """The content digest of this request's latest local decision, None without one."""
        return await self._run(lambda: latest_digest(self._conn(), token, acquirer_id, request_id))

    async def backlog(self) -> tuple[int, int | None]:
        """(entries not yet moved, decided_at_ms of the oldest of them)."""

        def work() -> tuple[int, int | None]:
            count, oldest = (
                self._conn()
                .execute("SELECT COUNT(*), MIN(decided_at_ms) FROM decisions WHERE moved_at_ms IS NULL")
                .fetchone()
            )
            return int(count), oldest

        return await self._run(work)

    async def superseded(self) -> list[tuple[str, str]]:
        """(decision id, stream id of the decision that won) of local decisions another one superseded."""

        def work() -> list[tuple[str, str]]:
            rows = self._conn().execute(
                "SELECT decision_id, stream_id FROM decisions WHERE outcome_status = 'superseded'"
            )
            return [(r[0], r[1] or "") for r in rows]

        return await self._run(work)
