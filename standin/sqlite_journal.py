"""The local journal: where decisions are recorded, and counted, while Redis is unreachable.

One SQLite file per gateway instance, WAL with synchronous=FULL (each commit is
fsynced before stand-in answers), all access on one dedicated thread so the
event loop never blocks on disk. While Redis is down it is also the limit
store: a card's local approvals in the window are summed against a fraction of
the fleet limits (LocalSettings.limit_fraction), in the same transaction that
records the decision, and card status is read from a copy of the issuer's list
refreshed from Redis while it was up. Rows keep the exact stream fields (PAN encrypted) until
they are moved to Redis (migrate.py); a moved row keeps its stream id.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from authgw.codes import ResponseCode
from standin.errors import ClosedError, LocalJournalError
from standin.outcome import Outcome, Proposal
from standin.rules import APPROVED_RULE, Assessment
from standin.types import CardStatus, LimitKind, Reason

__all__ = ["LocalEntry", "SqliteJournal"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,  -- recording order: keeps per-card order when moved
    decision_id        TEXT NOT NULL UNIQUE,
    card_token         TEXT NOT NULL,
    request_id         TEXT NOT NULL,
    limit_kind         TEXT NOT NULL,
    limit_amount_minor INTEGER NOT NULL,                   -- amount in limit currency
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

_STATUS_RULES = {
    CardStatus.BLOCKED: (ResponseCode.DO_NOT_HONOUR, "card_status.blocked"),
    CardStatus.LOST: (ResponseCode.LOST_CARD, "card_status.lost"),
    CardStatus.STOLEN: (ResponseCode.STOLEN_CARD, "card_status.stolen"),
}

_SELECT = (
    "SELECT seq, card_token, request_id, limit_kind, limit_amount_minor, decided_at_ms,"
    " counted_in_redis, fields FROM decisions WHERE moved_at_ms IS NULL"
)
_SELECT_PENDING = _SELECT + " ORDER BY seq LIMIT ?"
_SELECT_PENDING_OF_CARD = _SELECT + " AND card_token = ? ORDER BY seq LIMIT ?"
_Row = tuple[int, str, str, str, int, int, int, str]


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """A decision in the local journal not yet moved to the Redis stream."""

    seq: int
    card_token: str
    request_id: str
    kind: LimitKind
    amount_minor: int
    counted_in_redis: bool
    outcome: Outcome
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Record:
    card_token: str
    request_id: str
    kind: LimitKind
    amount_minor: int
    outcome: Outcome
    counted_in_redis: bool


def _outcome(fields: dict[str, str], decided_at_ms: int, fresh: bool) -> Outcome:
    return Outcome(
        fresh=fresh,
        decision_id=fields["decision_id"],
        response_code=ResponseCode(fields["response_code"]),
        rule=fields["rule"],
        approval_code=fields["approval_code"],
        risk_tier=fields["risk_tier"],
        reason=Reason(fields["reason"]),
        decided_at_ms=decided_at_ms,
        gateway_instance=fields["gateway_instance"],
    )


def _entry(row: _Row) -> LocalEntry:
    seq, token, request_id, kind, amount, decided_at_ms, counted, raw = row
    fields: dict[str, str] = json.loads(raw)
    outcome = _outcome(fields, decided_at_ms, fresh=False)
    return LocalEntry(seq, token, request_id, LimitKind(kind), amount, bool(counted), outcome, fields)


class SqliteJournal:
    """The local SQLite journal, driven from one dedicated thread."""

    def __init__(self, path: Path, *, window: timedelta) -> None:
        self.path = path
        self._window_ms = int(window / timedelta(milliseconds=1))
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Open (creating if needed) the database on the journal's own thread."""
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
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ClosedError("local journal is closed")
        return self._db

    # -- decisions ---------------------------------------------------------------------------------

    async def decide(
        self,
        token: str,
        request_id: str,
        assessment: Assessment,
        proposal: Proposal,
        build_fields: Callable[[Outcome], dict[str, str]],
    ) -> Outcome:
        """Decide against the local counters and record, in one fsynced transaction.

        Args:
            assessment: with its limit already scaled to the local fraction.
            build_fields: makes the entry fields of the outcome (runs on the journal thread).
        """
        return await self._run(lambda: self._decide(token, request_id, assessment, proposal, build_fields))

    def _decide(
        self,
        token: str,
        request_id: str,
        assessment: Assessment,
        proposal: Proposal,
        build_fields: Callable[[Outcome], dict[str, str]],
    ) -> Outcome:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            earlier = db.execute(
                "SELECT decided_at_ms, fields FROM decisions WHERE card_token = ? AND request_id = ?"
                " ORDER BY seq LIMIT 1",
                (token, request_id),
            ).fetchone()
            if earlier is not None:
                db.execute("ROLLBACK")
                return _outcome(json.loads(earlier[1]), earlier[0], fresh=False)
            code, rule = self._check(db, token, assessment, proposal.decided_at_ms)
            outcome = Outcome(
                fresh=True,
                decision_id=proposal.decision_id,
                response_code=code,
                rule=rule,
                approval_code=proposal.approval_code if code.approved else "",
                risk_tier=proposal.risk_tier,
                reason=proposal.reason,
                decided_at_ms=proposal.decided_at_ms,
                gateway_instance=proposal.gateway_instance,
            )
            record = _Record(token, request_id, assessment.kind, assessment.amount_minor, outcome, False)
            self._insert(db, record, build_fields(outcome))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return outcome

    def _check(
        self, db: sqlite3.Connection, token: str, assessment: Assessment, now_ms: int
    ) -> tuple[ResponseCode, str]:
        status = db.execute("SELECT status FROM card_status WHERE card_token = ?", (token,)).fetchone()
        if status is not None and CardStatus(status[0]) in _STATUS_RULES:
            return _STATUS_RULES[CardStatus(status[0])]
        if assessment.decline is not None:
            return assessment.decline.code, assessment.decline.rule
        window_ms = self._window_ms
        total, count = db.execute(
            "SELECT COALESCE(SUM(limit_amount_minor), 0), COUNT(*) FROM decisions"
            " WHERE card_token = ? AND limit_kind = ? AND approved = 1 AND decided_at_ms > ?",
            (token, assessment.kind.value, now_ms - window_ms),
        ).fetchone()
        kind = assessment.kind.value
        if total + assessment.amount_minor > assessment.limit.max_amount_minor:
            return ResponseCode.EXCEEDS_AMOUNT_LIMIT, f"limit.amount.{kind}"
        if count + 1 > assessment.limit.max_count:
            return ResponseCode.EXCEEDS_FREQUENCY_LIMIT, f"limit.count.{kind}"
        return ResponseCode.APPROVED, APPROVED_RULE

    @staticmethod
    def _insert(db: sqlite3.Connection, r: _Record, fields: dict[str, str]) -> None:
        outcome = r.outcome
        db.execute(
            "INSERT OR IGNORE INTO decisions (decision_id, card_token, request_id, limit_kind,"
            " limit_amount_minor, approved, decided_at_ms, counted_in_redis, fields)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                outcome.decision_id,
                r.card_token,
                r.request_id,
                r.kind.value,
                r.amount_minor,
                int(outcome.response_code.approved),
                outcome.decided_at_ms,
                int(r.counted_in_redis),
                json.dumps(fields, separators=(",", ":")),
            ),
        )

    async def record(
        self, token: str, request_id: str, *, kind: LimitKind, amount_minor: int, outcome: Outcome,
        fields: dict[str, str],
    ) -> None:  # fmt: skip
        """Record a decision Redis already counted but could not journal (idempotent by decision id)."""
        record = _Record(token, request_id, kind, amount_minor, outcome, True)

        def work() -> None:
            self._insert(self._conn(), record, fields)

        await self._run(work)

    async def replace_card_statuses(self, statuses: dict[str, CardStatus]) -> None:
        """Replace the local copy of the issuer's card statuses (one transaction)."""

        def work() -> None:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM card_status")
                db.executemany(
                    "INSERT INTO card_status (card_token, status) VALUES (?, ?)",
                    [(token, status.value) for token, status in statuses.items()],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        await self._run(work)

    # -- backlog ------------------------------------------------------------------------------------

    async def pending(self, limit: int, token: str | None = None) -> list[LocalEntry]:
        """The oldest decisions not yet in the Redis stream (of one card when `token` is given)."""

        def work() -> list[LocalEntry]:
            db = self._conn()
            if token is None:
                rows = db.execute(_SELECT_PENDING, (limit,)).fetchall()
            else:
                rows = db.execute(_SELECT_PENDING_OF_CARD, (token, limit)).fetchall()
            return [_entry(r) for r in rows]

        return await self._run(work)

    async def pending_tokens(self) -> set[str]:
        """Tokens of the cards that have decisions not yet in the Redis stream."""

        def work() -> set[str]:
            rows = self._conn().execute("SELECT DISTINCT card_token FROM decisions WHERE moved_at_ms IS NULL")
            return {r[0] for r in rows}

        return await self._run(work)

    async def mark_moved(self, moved: list[tuple[str, str]], now_ms: int) -> None:
        """Mark (decision_id, stream_id) pairs as moved, in one fsynced transaction."""

        def work() -> None:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "UPDATE decisions SET stream_id = ?, moved_at_ms = ? WHERE decision_id = ?",
                    [(stream_id, now_ms, decision_id) for decision_id, stream_id in moved],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        await self._run(work)

    async def backlog(self) -> tuple[int, int | None]:
        """(decisions not yet moved, decided_at_ms of the oldest of them)."""

        def work() -> tuple[int, int | None]:
            count, oldest = (
                self._conn()
                .execute("SELECT COUNT(*), MIN(decided_at_ms) FROM decisions WHERE moved_at_ms IS NULL")
                .fetchone()
            )
            return int(count), oldest

        return await self._run(work)
