"""What the local journal decides inside one SQLite transaction: the Redis scripts' rules, locally.

Called on the journal's own thread (sqlite_journal.py), inside `BEGIN IMMEDIATE`:
the same rules as lua.DECIDE and lua.REVERSE, against this gateway's own rows only
(limits scaled down by LocalSettings.limit_fraction), so that a decision made
while Redis is away is consistent with what this gateway has already answered:
a repeat gets the same decision, a reused request id is refused, an original
whose reversal came first is declined, a reversal releases what its approval drew.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from authgw.codes import ResponseCode
from standin.errors import ReusedRequestIdError
from standin.outcome import Outcome, Proposal
from standin.rules import APPROVED_RULE, BUDGET_CODE, Assessment, budget_rule
from standin.types import CardStatus, LimitKind, Reason, ReversalStatus, StandInReversal

__all__ = [
    "APPEND_ONLY", "Local", "RequestKey", "decide_in", "insert_decision", "latest_digest", "outcome_of",
    "reverse_in",
]  # fmt: skip

DECISION = "decision"
REVERSAL = "reversal"
# An entry Redis decided but could not append, that only needs appending (no ABSORB): a decision
# given again (again = 1), or the declined advice of a refused reused id. Its row's id is the
# dedupe marker of its append (StreamJournal.append's once_per); it counts nothing here (approved 0).
APPEND_ONLY = "append_only"

_STATUS_RULES = {
    CardStatus.BLOCKED: (ResponseCode.DO_NOT_HONOUR, "card_status.blocked"),
    CardStatus.LOST: (ResponseCode.LOST_CARD, "card_status.lost"),
    CardStatus.STOLEN: (ResponseCode.STOLEN_CARD, "card_status.stolen"),
}


@dataclass(frozen=True, slots=True)
class RequestKey:
    """Which request a local row belongs to, and what a reversal of it will state."""

    card_token: str
    acquirer_id: str
    request_id: str
    digest: str  # keyed digest of the content (a repeat with another one is a reused id)
    txn_amount_minor: int  # in the transaction's currency


@dataclass(frozen=True, slots=True)
class Local:
    """A decision about to be recorded locally."""

    key: RequestKey
    kind: LimitKind
    amount_minor: int  # in limit currency (counted against the window)
    outcome: Outcome
    counted_in_redis: bool


def outcome_of(fields: dict[str, str], decided_at_ms: int, answered_at_ms: int, fresh: bool) -> Outcome:
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
        answered_at_ms=answered_at_ms,
    )


def insert_decision(db: sqlite3.Connection, r: Local, fields: dict[str, str], *, marker: str = "") -> None:
    """One decision row (idempotent by decision id), or with `marker` an APPEND_ONLY row of that id."""
    o, k = r.outcome, r.key
    row_id, kind, approved = o.decision_id, DECISION, int(o.response_code.approved)
    if marker:
        row_id, kind, approved = marker, APPEND_ONLY, 0
    db.execute(
        "INSERT OR IGNORE INTO decisions (decision_id, entry_kind, card_token, acquirer_id, request_id,"
        " digest, limit_kind, limit_amount_minor, txn_amount_minor, approved, decided_at_ms,"
        " answered_at_ms, counted_in_redis, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row_id, kind, k.card_token, k.acquirer_id, k.request_id, k.digest, r.kind.value,
            r.amount_minor, k.txn_amount_minor, approved, o.decided_at_ms, o.answered_ms,
            int(r.counted_in_redis), json.dumps(fields, separators=(",", ":")),
        ),
    )  # fmt: skip


def _check(
    db: sqlite3.Connection, token: str, assessment: Assessment, now_ms: int, window_ms: int
) -> tuple[ResponseCode, str]:
    status = db.execute("SELECT status FROM card_status WHERE card_token = ?", (token,)).fetchone()
    if status is not None and CardStatus(status[0]) in _STATUS_RULES:
        return _STATUS_RULES[CardStatus(status[0])]
    if assessment.decline is not None:
        return assessment.decline.code, assessment.decline.rule
    for budget in assessment.budgets:
        # Every approval of this gateway in the period, whatever its scope: a share is a ceiling.
        (spent,) = db.execute(
            "SELECT COALESCE(SUM(limit_amount_minor), 0) FROM decisions WHERE approved = 1"
            " AND entry_kind = 'decision' AND released = 0 AND decided_at_ms > ?",
            (now_ms - int(budget.period.total_seconds() * 1000),),
        ).fetchone()
        if spent + assessment.amount_minor > int(budget.max_amount_minor * assessment.budget_fraction):
            return BUDGET_CODE, budget_rule(budget)
    total, count = db.execute(
        "SELECT COALESCE(SUM(limit_amount_minor), 0), COUNT(*) FROM decisions WHERE card_token = ?"
        " AND entry_kind = 'decision' AND limit_kind = ? AND approved = 1 AND released = 0"
        " AND decided_at_ms > ?",
        (token, assessment.kind.value, now_ms - window_ms),
    ).fetchone()
    kind = assessment.kind.value
    if total + assessment.amount_minor > assessment.limit.max_amount_minor:
        return ResponseCode.EXCEEDS_AMOUNT_LIMIT, f"limit.amount.{kind}"
    if count + 1 > assessment.limit.max_count:
        return ResponseCode.EXCEEDS_FREQUENCY_LIMIT, f"limit.count.{kind}"
    return ResponseCode.APPROVED, APPROVED_RULE


def _rule(
    db: sqlite3.Connection, key: RequestKey, assessment: Assessment, now_ms: int, window_ms: int
) -> tuple[ResponseCode, str]:
    if assessment.advised:
        return ResponseCode.APPROVED, assessment.advised
    held = db.execute(
        "SELECT 1 FROM decisions WHERE card_token = ? AND acquirer_id = ? AND original_request_id = ?"
        " AND entry_kind = 'reversal' LIMIT 1",
        (key.card_token, key.acquirer_id, key.request_id),
    ).fetchone()
    if held is not None:
        return ResponseCode.DO_NOT_HONOUR, "reversal.before_original"
    return _check(db, key.card_token, assessment, now_ms, window_ms)


_LATEST_OF_REQUEST = (
    " FROM decisions WHERE card_token = ? AND acquirer_id = ? AND request_id = ?"
    " AND entry_kind = 'decision' ORDER BY seq DESC LIMIT 1"
)
"""The request's latest decision row: an advice may have superseded a decline."""


def latest_digest(db: sqlite3.Connection, token: str, acquirer_id: str, request_id: str) -> str | None:
    """The content digest of the request's latest decision row, None without one."""
    row = db.execute("SELECT digest" + _LATEST_OF_REQUEST, (token, acquirer_id, request_id)).fetchone()
    return str(row[0]) if row and row[0] else None


def decide_in(
    db: sqlite3.Connection,
    key: RequestKey,
    assessment: Assessment,
    proposal: Proposal,
    *,
    build_fields: Callable[[Outcome], dict[str, str]],
    window_ms: int,
) -> Outcome:
    """Replay, refuse, or decide and record one request (inside the caller's transaction).

    An acquirer advice (assessment.advised) is recorded approved whatever the rules say, replays an
    approved row of its request and supersedes a declined one (as lua.DECIDE).
    """
    # The request's latest row: an advice may have superseded a decline, and a repeat replays the advice.
    earlier = db.execute(
        "SELECT rowid, decided_at_ms, digest, fields, approved" + _LATEST_OF_REQUEST,
        (key.card_token, key.acquirer_id, key.request_id),
    ).fetchone()
    now = proposal.decided_at_ms
    if earlier is not None:
        rowid, decided_at_ms, digest, raw, approved = earlier
        if digest and digest != key.digest:
            raise ReusedRequestIdError(f"request {key.request_id!r} was decided for other content")
        if not assessment.advised or approved:
            db.execute("UPDATE decisions SET answered_at_ms = ? WHERE rowid = ?", (now, rowid))
            return outcome_of(json.loads(raw), decided_at_ms, now, fresh=False)
    code, rule = _rule(db, key, assessment, now, window_ms)
    outcome = Outcome(
        fresh=True,
        decision_id=proposal.decision_id,
        response_code=code,
        rule=rule,
        approval_code=proposal.approval_code if code.approved else "",
        risk_tier=proposal.risk_tier,
        reason=proposal.reason,
        decided_at_ms=now,
        gateway_instance=proposal.gateway_instance,
        answered_at_ms=now,
    )
    record = Local(key, assessment.kind, assessment.amount_minor, outcome, counted_in_redis=False)
    insert_decision(db, record, build_fields(outcome))
    if proposal.supersedes:
        db.execute(
            "UPDATE decisions SET lost_call = ? WHERE decision_id = ?",
            (proposal.supersedes, outcome.decision_id),
        )
    return outcome


def reverse_in(
    db: sqlite3.Connection,
    token: str,
    reversal: StandInReversal,
    *,
    entry_id: str,
    build_fields: Callable[[ReversalStatus], dict[str, str]],
    now_ms: int,
) -> tuple[ReversalStatus, str, bool]:
    """Apply or record a reversal against this gateway's own rows: (status, entry id, new)."""
    seen = db.execute(
        "SELECT decision_id, outcome_status FROM decisions WHERE card_token = ? AND acquirer_id = ?"
        " AND request_id = ? AND entry_kind = 'reversal'",
        (token, reversal.acquirer_id, reversal.reversal_id),
    ).fetchone()
    if seen is not None:
        return ReversalStatus(seen[1]), seen[0], False
    original = db.execute(
        "SELECT rowid, approved, limit_amount_minor, txn_amount_minor, final_amount_minor FROM decisions"
        " WHERE card_token = ? AND acquirer_id = ? AND request_id = ? AND entry_kind = 'decision'"
        " ORDER BY seq DESC LIMIT 1",
        (token, reversal.acquirer_id, reversal.original_request_id),
    ).fetchone()
    final = reversal.final_amount_minor
    said = reversal.original_amount_minor
    if original is not None and said and original[3] and original[3] != said:
        original = None  # another content under the same ids (a reused id): not this one's original
    if original is None:
        status = ReversalStatus.STORED
    else:
        rowid, approved, limit_amount, txn_amount, already = original
        current = txn_amount if already is None else already
        if not approved:
            status = ReversalStatus.DECLINED  # journaled all the same (see ReversalStatus)
        elif final >= current:
            status = ReversalStatus.NO_EFFECT
        else:
            remaining = math.ceil(final * limit_amount / txn_amount) if txn_amount else 0
            db.execute(
                "UPDATE decisions SET limit_amount_minor = ?, final_amount_minor = ?, released = ?"
                " WHERE rowid = ?",
                (remaining, final, int(final == 0), rowid),
            )
            status = ReversalStatus.APPLIED
    fields = build_fields(status) if status is not ReversalStatus.NO_EFFECT else {}
    db.execute(
        "INSERT INTO decisions (decision_id, entry_kind, card_token, acquirer_id, request_id,"
        " original_request_id, digest, limit_kind, limit_amount_minor, txn_amount_minor, approved,"
        " decided_at_ms, answered_at_ms, counted_in_redis, outcome_status, fields, moved_at_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, '', ?, 0, ?, 0, ?, ?, 0, ?, ?, ?)",
        (
            entry_id, REVERSAL, token, reversal.acquirer_id, reversal.reversal_id,
            reversal.original_request_id, LimitKind.PURCHASE.value, final, now_ms, now_ms, status.value,
            json.dumps(fields, separators=(",", ":")),
            now_ms if status is ReversalStatus.NO_EFFECT else None,  # nothing to forward
        ),
    )  # fmt: skip
    return status, entry_id, True
